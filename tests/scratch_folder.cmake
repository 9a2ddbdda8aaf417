# CTest's scratch fixture (tests/CMakeLists.txt), run as cmake -DMODE=... -DDIR=... -P scratch_folder.cmake.
# MODE "make": DIR made empty before any test runs. MODE "check": after every test has run, fails when
# anything is left in DIR, naming it: a test that does not remove its files fills the disk of whoever
# runs the suite again and again (tests/support/scratch.h).
if(MODE STREQUAL "make")
  file(REMOVE_RECURSE "${DIR}")
  file(MAKE_DIRECTORY "${DIR}")
elseif(MODE STREQUAL "check")
  file(GLOB left RELATIVE "${DIR}" "${DIR}/*")
  if(left)
    list(JOIN left ", " names)
    message(FATAL_ERROR "the tests left files in ${DIR}: ${names}")
  endif()
else()
  message(FATAL_ERROR "scratch_folder.cmake: MODE must be make or check, got '${MODE}'")
endif()
