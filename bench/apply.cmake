# bench_apply_parallel: N Applies of different layers at once versus one
# after another (issue 16, containerd's parallel unpack with rebase).
add_executable(bench_apply_parallel ${CMAKE_CURRENT_LIST_DIR}/bench_apply_parallel.c)
target_link_libraries(bench_apply_parallel PRIVATE lcow_core lcow_test_layerblob lcow::zlib)
target_include_directories(bench_apply_parallel PRIVATE ${PROJECT_SOURCE_DIR})
