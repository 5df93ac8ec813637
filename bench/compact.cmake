# bench_compact: Compact of a filled-and-emptied 20 GiB scratch beside
# qemu-img convert of the same disk, and Usage with the ext4 view at 1,000
# actives (issue 18; docs/performance.md). Needs qemu-img and debugfs.
add_executable(bench_compact ${CMAKE_CURRENT_LIST_DIR}/bench_compact.c)
target_link_libraries(bench_compact PRIVATE lcow_core)
target_include_directories(bench_compact PRIVATE ${PROJECT_SOURCE_DIR})
