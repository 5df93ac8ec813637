# bench_scratchdisk: formatted 20 GiB / 1 TiB scratch VHDX, in-process vs
# mkfs.ext4 + qemu-img convert in the same run (docs/performance.md).
add_executable(bench_scratchdisk ${CMAKE_CURRENT_LIST_DIR}/bench_scratchdisk.c)
target_link_libraries(bench_scratchdisk PRIVATE lcow_disk)
target_include_directories(bench_scratchdisk PRIVATE ${PROJECT_SOURCE_DIR})
