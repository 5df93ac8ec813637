# Snapshot metadata and the snapshotter (core/metastore, core/snapshotter).
if(TARGET lcow_core)
  # The scratch policy and disk builder are other modules of lcow_core; until
  # their sources exist the snapshotter builds without them (empty active
  # directories) instead of failing to link.
  file(GLOB lcow_scratch_policy_src CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/core/scratch.c)
  file(GLOB lcow_scratch_disk_src CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/core/scratchdisk*.c)
  if(NOT lcow_scratch_policy_src)
    target_compile_definitions(lcow_core PRIVATE LCOW_NO_SCRATCH_POLICY)
  endif()
  set(lcow_core_test_extra)
  if(NOT lcow_scratch_disk_src)
    target_compile_definitions(lcow_core PRIVATE LCOW_NO_SCRATCH_DISK)
    # scratch.c calls the disk builder too: give the tests a stand-in that
    # refuses, so they link until core/scratchdisk*.c exists.
    file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/core_scratchdisk_stub.c
         "#include \"core/scratchdisk.h\"\n"
         "lcow_code lcow_scratch_disk_create(const char *p, const lcow_scratch_disk_options *o,\n"
         "                                   lcow_error *err)\n"
         "{ (void)p; (void)o; return lcow_error_set(err, LCOW_NOT_IMPLEMENTED, \"no disk builder\"); }\n")
    set(lcow_core_test_extra ${CMAKE_CURRENT_BINARY_DIR}/core_scratchdisk_stub.c)
  endif()
  lcow_unit_test(NAME test_metastore SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_metastore.c
                 LIBS lcow_core LABELS core)
  lcow_unit_test(NAME test_snapshotter
                 SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_snapshotter.c ${lcow_core_test_extra}
                 LIBS lcow_core LABELS core TIMEOUT 900)
endif()
