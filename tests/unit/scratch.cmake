# core/scratch: label rules, template cache, sandbox.vhdx creation. The
# policy is compiled into the test directly (not through lcow_core) so the
# test does not depend on the metadata modules.
file(GLOB lcow_scratch_disk_builder CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/core/scratchdisk*.c)
set(scratch_test_libs lcow_os)
set(scratch_test_fake_builder OFF)
if(lcow_scratch_disk_builder AND TARGET lcow_disk)
  set(scratch_test_libs lcow_disk lcow_os)
else()
  # Until core/scratchdisk*.c exists the test brings a stand-in builder
  # (a VHDX signature and a little data): the cache, concurrency and fault
  # rules still run everywhere; qemu-img/e2fsck validation waits for the
  # real builder.
  set(scratch_test_fake_builder ON)
endif()
lcow_unit_test(NAME test_scratch
               SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_scratch.c ${PROJECT_SOURCE_DIR}/core/scratch.c
               LIBS ${scratch_test_libs} LABELS scratch TIMEOUT 900)
if(scratch_test_fake_builder)
  target_compile_definitions(test_scratch PRIVATE LCOW_TEST_FAKE_DISK_BUILDER)
endif()
