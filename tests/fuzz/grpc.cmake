# gRPC request decoder fuzz target (protobuf-c unpack, string checks, params,
# Update's info encoded back). grpc/codec.c is compiled into the target
# itself so libFuzzer's coverage instrumentation sees it.
lcow_fuzz_target(NAME fuzz_grpc_request
                 SOURCES ${CMAKE_CURRENT_LIST_DIR}/fuzz_grpc_request.c ${PROJECT_SOURCE_DIR}/grpc/codec.c
                 LIBS lcow_grpc_proto lcow_rpc_proto
                 CORPUS ${CMAKE_CURRENT_LIST_DIR}/corpus/grpc_request)

# The gRPC connection (HTTP/2 on nghttp2 behind a session, the dispatch, a
# stub store in the target): conn.c, codec.c, session.c and dispatch.c are
# compiled into the target for coverage.
lcow_fuzz_target(NAME fuzz_grpc_conn
                 SOURCES ${CMAKE_CURRENT_LIST_DIR}/fuzz_grpc_conn.c ${PROJECT_SOURCE_DIR}/grpc/conn.c
                         ${PROJECT_SOURCE_DIR}/grpc/codec.c ${PROJECT_SOURCE_DIR}/rpc/session.c
                         ${PROJECT_SOURCE_DIR}/rpc/dispatch.c
                 LIBS lcow_grpc_proto lcow_rpc_proto lcow_os lcow::nghttp2
                 CORPUS ${CMAKE_CURRENT_LIST_DIR}/corpus/grpc_conn)
