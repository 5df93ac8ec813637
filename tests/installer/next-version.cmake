# Injected with -DCMAKE_PROJECT_lcowsnap_INCLUDE=<this file> by build-next-version.sh:
# runs right after project(lcowsnap VERSION ...) and replaces the version with
# LCOW_NEXT_VERSION, so the second build tree of the upgrade test makes a genuinely
# newer lcowsnap.exe (its --version and the Version RPC say so) and MSI, without
# touching the one place the real version is defined.
if(NOT LCOW_NEXT_VERSION MATCHES "^([0-9]+)\\.([0-9]+)\\.([0-9]+)$")
  message(FATAL_ERROR "LCOW_NEXT_VERSION must be MAJOR.MINOR.PATCH, got '${LCOW_NEXT_VERSION}'")
endif()
foreach(prefix PROJECT lcowsnap CMAKE_PROJECT)
  set(${prefix}_VERSION ${LCOW_NEXT_VERSION})
  set(${prefix}_VERSION_MAJOR ${CMAKE_MATCH_1})
  set(${prefix}_VERSION_MINOR ${CMAKE_MATCH_2})
  set(${prefix}_VERSION_PATCH ${CMAKE_MATCH_3})
endforeach()
message(STATUS "lcowsnap version overridden for the upgrade test: ${PROJECT_VERSION}")
