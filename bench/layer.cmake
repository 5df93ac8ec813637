# Layer import benchmarks: bench_blob (blob reader decode throughput beside
# gzip -dc / zstd -dc / cat on the same file).
add_executable(bench_blob ${CMAKE_CURRENT_LIST_DIR}/bench_blob.c)
target_link_libraries(bench_blob PRIVATE lcow_layer lcow::zlib)
