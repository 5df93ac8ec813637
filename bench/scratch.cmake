# bench_scratch: create_own cold/warm vs cp --sparse=always, and format vs
# copy per size.
if(TARGET lcow_disk)
  add_executable(bench_scratch ${CMAKE_CURRENT_LIST_DIR}/bench_scratch.c
                               ${PROJECT_SOURCE_DIR}/core/scratch.c)
  target_link_libraries(bench_scratch PRIVATE lcow_disk lcow_os)
  target_include_directories(bench_scratch PRIVATE ${PROJECT_SOURCE_DIR})
endif()
