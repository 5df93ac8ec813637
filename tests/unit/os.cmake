# core/os (both platforms) and core/thread.
lcow_unit_test(NAME test_os SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_os.c ${CMAKE_CURRENT_LIST_DIR}/testlib.c
               LIBS lcow_os)
