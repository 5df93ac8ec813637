lcow_unit_test(NAME test_types SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_types.c LIBS lcow_base)
