# core/scratch: label rules, template cache, sandbox.vhdx creation. The
# policy is compiled into the test directly (not through lcow_core) so the
# test does not depend on the metadata modules; the disk builder comes from
# lcow_disk.
lcow_unit_test(NAME test_scratch
               SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_scratch.c ${CMAKE_CURRENT_LIST_DIR}/testlib.c
                       ${PROJECT_SOURCE_DIR}/core/scratch.c
               LIBS lcow_disk lcow_os LABELS scratch TIMEOUT 900)
