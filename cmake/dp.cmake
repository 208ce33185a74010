# Helpers shared by every CMakeLists.txt of the project.

# dp_add_test(NAME SOURCES... LABEL label [LIBS libs...] [TIMEOUT s])
# One line adds a Criterion test executable and registers it with ctest.
function(dp_add_test name)
  cmake_parse_arguments(T "" "LABEL;TIMEOUT" "SOURCES;LIBS" ${ARGN})
  if(NOT T_SOURCES)
    set(T_SOURCES ${T_UNPARSED_ARGUMENTS})
  endif()
  if(NOT T_LABEL)
    set(T_LABEL unit)
  endif()
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE dp_core PkgConfig::CRITERION ${T_LIBS})
  target_compile_definitions(${name} PRIVATE
    DP_SOURCE_DIR="${PROJECT_SOURCE_DIR}" DP_BINARY_DIR="${PROJECT_BINARY_DIR}")
  # not -q: Criterion's quiet mode hides a failing assertion, and a
  # failure seen once in CI must say what failed
  add_test(NAME ${name} COMMAND ${name} --jobs 1
           WORKING_DIRECTORY ${PROJECT_BINARY_DIR})
  set_tests_properties(${name} PROPERTIES LABELS ${T_LABEL} TIMEOUT ${T_TIMEOUT})
endfunction()

# dp_add_module(NAME DIR DEPS...): a static library from every .c in DIR.
function(dp_add_module name dir)
  file(GLOB srcs CONFIGURE_DEPENDS ${dir}/*.c)
  if(srcs)
    add_library(${name} STATIC ${srcs})
    target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR}/core)
    target_link_libraries(${name} PUBLIC ${ARGN})
  else()  # module not written yet: headers only
    add_library(${name} INTERFACE)
    target_include_directories(${name} INTERFACE ${PROJECT_SOURCE_DIR}/core)
    target_link_libraries(${name} INTERFACE ${ARGN})
  endif()
endfunction()
