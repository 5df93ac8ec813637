# Wine for the win64 test run. Included from the top CMakeLists.txt; does
# nothing in native builds except define empty variables and the helper.
#
# For other CMake code:
#   LCOW_TEST_FIXTURE   "wine" in the win64 build, empty natively. Every test
#                       that runs a Windows exe (or wine itself) adds
#                         FIXTURES_REQUIRED "${LCOW_TEST_FIXTURE}"
#                       (lcow_unit_test() already does). The fixture starts a
#                       persistent wineserver in the shared prefix before the
#                       first such test and ends it after the last one, so a
#                       test run leaves nothing running.
#   LCOW_WINE_ENV       the environment Wine needs, as a list of VAR=value
#                       (WINEPREFIX, WINEDEBUG=-all, WINEDLLOVERRIDES).
#   LCOW_WINE_COMMAND   `env -u DISPLAY <LCOW_WINE_ENV> wine` as a list: prefix
#                       it to run wine tools in tests, e.g.
#                       add_test(NAME x COMMAND ${LCOW_WINE_COMMAND} sc query Foo)
#                       Executable targets need nothing: CTest already runs
#                       them through CMAKE_CROSSCOMPILING_EMULATOR (the same).
#   lcow_wine_path(<out> <linux-path>)  Z:\... path of an absolute Linux path
#                       (Wine maps Z: to /). Backslashes matter: LevelDB under
#                       Wine fails on paths without them.
#   LCOW_WINE_HELPER    scripts/wine-env.sh (init|up|down|status|run).

function(lcow_wine_path out linux_path)
  get_filename_component(abs "${linux_path}" ABSOLUTE)
  string(REPLACE "/" "\\" win "Z:${abs}")
  set(${out} "${win}" PARENT_SCOPE)
endfunction()

set(LCOW_WINE_HELPER ${PROJECT_SOURCE_DIR}/scripts/wine-env.sh)

if(NOT (WIN32 AND CMAKE_CROSSCOMPILING))
  set(LCOW_TEST_FIXTURE "")
  set(LCOW_WINE_ENV "")
  set(LCOW_WINE_COMMAND "")
  return()
endif()

if(NOT LCOW_WINEPREFIX)
  set(LCOW_WINEPREFIX ${PROJECT_SOURCE_DIR}/build/wine-prefix)
endif()
if(NOT LCOW_WINE)
  set(LCOW_WINE wine)
endif()
set(LCOW_WINE_ENV WINEPREFIX=${LCOW_WINEPREFIX} WINEDEBUG=-all WINEDLLOVERRIDES=mscoree,mshtml=)
set(LCOW_WINE_COMMAND env -u DISPLAY ${LCOW_WINE_ENV} ${LCOW_WINE})
set(LCOW_TEST_FIXTURE wine)

# Setup and cleanup are ordinary tests; CTest adds them to any selection
# (-R, -L) that contains a test requiring the fixture.
add_test(NAME wine_up COMMAND ${LCOW_WINE_HELPER} up)
add_test(NAME wine_down COMMAND ${LCOW_WINE_HELPER} down)
set_tests_properties(wine_up PROPERTIES FIXTURES_SETUP wine TIMEOUT 180)
set_tests_properties(wine_down PROPERTIES FIXTURES_CLEANUP wine TIMEOUT 60)
set_tests_properties(wine_up wine_down PROPERTIES
                     ENVIRONMENT "LCOW_WINEPREFIX=${LCOW_WINEPREFIX}" LABELS wine)
