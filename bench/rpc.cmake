# bench_rpc: Stat and Prepare/Commit round trips with 1, 8, 32 clients beside
# a bare echo over the same Unix socket transport (docs/performance.md, RPC).
add_executable(bench_rpc ${CMAKE_CURRENT_LIST_DIR}/bench_rpc.c)
target_link_libraries(bench_rpc PRIVATE lcow_rpc lcow_client lcow_core)
target_include_directories(bench_rpc PRIVATE ${PROJECT_SOURCE_DIR})
