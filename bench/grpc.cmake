# bench_grpc: Stat round trips over the gRPC endpoint beside MessagePack-RPC
# and a bare HTTP/2 echo (nghttp2) on the same Unix socket transport, 1, 8,
# 32 clients; List of 100k snapshots (docs/performance.md, gRPC).
add_executable(bench_grpc ${CMAKE_CURRENT_LIST_DIR}/bench_grpc.c
                          ${PROJECT_SOURCE_DIR}/tests/unit/grpc_test_client.c)
target_link_libraries(bench_grpc PRIVATE lcow_grpc lcow_rpc lcow_client lcow_core lcow::nghttp2)
target_include_directories(bench_grpc PRIVATE ${PROJECT_SOURCE_DIR} ${PROJECT_SOURCE_DIR}/tests)
