lcow_unit_test(NAME test_types SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_types.c LIBS lcow_base)
lcow_unit_test(NAME test_json SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_json.c LIBS lcow_base)
