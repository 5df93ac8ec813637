# The Walk filter. Its test links a private library of just the filter and
# the value types, so it does not depend on the rest of lcow_core.
add_library(lcow_filter_only STATIC ${PROJECT_SOURCE_DIR}/core/filter.c
                                    ${PROJECT_SOURCE_DIR}/core/base/alloc.c
                                    ${PROJECT_SOURCE_DIR}/core/base/types.c
                                    ${PROJECT_SOURCE_DIR}/core/base/errors.c)
target_include_directories(lcow_filter_only PUBLIC ${PROJECT_SOURCE_DIR})
target_link_libraries(lcow_filter_only PUBLIC lcow::pcre2)
lcow_unit_test(NAME test_filter SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_filter.c
               LIBS lcow_filter_only Threads::Threads)
