# gRPC request decoder fuzz target (protobuf-c unpack, string checks, params,
# Update's info encoded back). grpc/codec.c is compiled into the target
# itself so libFuzzer's coverage instrumentation sees it.
lcow_fuzz_target(NAME fuzz_grpc_request
                 SOURCES ${CMAKE_CURRENT_LIST_DIR}/fuzz_grpc_request.c ${PROJECT_SOURCE_DIR}/grpc/codec.c
                 LIBS lcow_grpc_proto lcow_rpc_proto
                 CORPUS ${CMAKE_CURRENT_LIST_DIR}/corpus/grpc_request)
