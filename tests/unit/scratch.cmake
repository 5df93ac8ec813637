# core/scratch: label rules, template cache, sandbox.vhdx creation. The
# policy is compiled into the test directly (not through lcow_core) so the
# test does not depend on the metadata modules; the disk builder comes from
# lcow_disk.
lcow_unit_test(NAME test_scratch
               SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_scratch.c ${CMAKE_CURRENT_LIST_DIR}/testlib.c
                       ${PROJECT_SOURCE_DIR}/core/scratch.c
               LIBS lcow_disk lcow_os LABELS scratch TIMEOUT 900)

# The torture form of test_scratch's swap race (issue 14, item 5): the race
# for 20 s, as the issue asks (make test runs it for 3 s). Native only (the
# race swaps a directory for a symbolic link); `make torture` runs it, a
# plain ctest skips it (tests/torture/torture_gate.sh).
if(NOT WIN32)
  add_test(NAME torture_scratch_swap_race
           COMMAND ${PROJECT_SOURCE_DIR}/tests/torture/torture_gate.sh $<TARGET_FILE:test_scratch>)
  set_tests_properties(
    torture_scratch_swap_race
    PROPERTIES LABELS "torture;scratch" TIMEOUT 300 SKIP_RETURN_CODE 77
               ENVIRONMENT
               "LCOW_TEST_TMP=${LCOW_TEST_TMP_ROOT}/torture_scratch_swap_race;LCOW_SWAP_RACE_SECONDS=20;LCOW_TEST_ONLY=swapped_directory_redirects_nothing")
  file(MAKE_DIRECTORY ${LCOW_TEST_TMP_ROOT}/torture_scratch_swap_race)
endif()
