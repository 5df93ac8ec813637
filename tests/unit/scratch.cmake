# core/scratch: label rules, template cache, sandbox.vhdx creation. The
# policy is compiled into the test directly (not through lcow_core) so the
# test does not depend on the metadata modules.
file(GLOB lcow_scratch_disk_builder CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/core/scratchdisk*.c)
set(scratch_test_extra)
set(scratch_test_libs lcow_os)
if(lcow_scratch_disk_builder AND TARGET lcow_disk)
  set(scratch_test_libs lcow_disk lcow_os)
else()
  # Until core/scratchdisk*.c exists the disk-making tests skip themselves.
  file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/scratch_test_no_disk_builder.c
       "#include \"core/scratchdisk.h\"\n"
       "lcow_code lcow_scratch_disk_create(const char *p, const lcow_scratch_disk_options *o,\n"
       "                                   lcow_error *err)\n"
       "{ (void)p; (void)o; return lcow_error_set(err, LCOW_NOT_IMPLEMENTED, \"no disk builder\"); }\n")
  set(scratch_test_extra ${CMAKE_CURRENT_BINARY_DIR}/scratch_test_no_disk_builder.c)
endif()
lcow_unit_test(NAME test_scratch
               SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_scratch.c ${PROJECT_SOURCE_DIR}/core/scratch.c
                       ${scratch_test_extra}
               LIBS ${scratch_test_libs} LABELS scratch TIMEOUT 900)
if(scratch_test_extra)
  target_compile_definitions(test_scratch PRIVATE LCOW_TEST_NO_DISK_BUILDER)
endif()
