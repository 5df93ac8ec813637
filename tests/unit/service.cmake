# service/: flags, logging, foreground host (everywhere); SCM hosting,
# registration and the Event Log through the fake svcapi table (Windows,
# run under Wine).
lcow_unit_test(NAME test_config SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_config.c
               LIBS lcow_service LABELS service)
if(WIN32)
  lcow_unit_test(NAME test_service_win SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_service_win.c
                 LIBS lcow_service LABELS service)
endif()
