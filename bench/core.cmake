# bench_snapshotter: snapshot metadata at 1k..1M snapshots beside raw LevelDB.
if(TARGET lcow_core)
  set(lcow_bench_core_extra)
  file(GLOB lcow_bench_core_disk CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/core/scratchdisk*.c)
  if(NOT lcow_bench_core_disk)
    # Until core/scratchdisk*.c exists (scratch.c calls it): a refusing stand-in.
    file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/core_scratchdisk_stub.c
         "#include \"core/scratchdisk.h\"\n"
         "lcow_code lcow_scratch_disk_create(const char *p, const lcow_scratch_disk_options *o,\n"
         "                                   lcow_error *err)\n"
         "{ (void)p; (void)o; return lcow_error_set(err, LCOW_NOT_IMPLEMENTED, \"no disk builder\"); }\n")
    set(lcow_bench_core_extra ${CMAKE_CURRENT_BINARY_DIR}/core_scratchdisk_stub.c)
  endif()
  add_executable(bench_snapshotter ${CMAKE_CURRENT_LIST_DIR}/bench_snapshotter.c
                                   ${lcow_bench_core_extra})
  target_link_libraries(bench_snapshotter PRIVATE lcow_core lcow::leveldb)
  target_include_directories(bench_snapshotter PRIVATE ${PROJECT_SOURCE_DIR})
endif()
