# Embeds files as byte arrays (no string-literal length limits, no Python): the OpenCL
# kernels, and the model zoo.
# Usage: cmake -DOUT=file.c -DKERNELS="a.cl,b.cl" -DDIR=kernels [-DSYMBOL=kiln_embedded_kernels]
#              -P embed-kernels.cmake
# Commas, not semicolons: a list passed through a custom command would split the command.
string(REPLACE "," ";" KERNELS "${KERNELS}")
if(NOT SYMBOL)
  set(SYMBOL kiln_embedded_kernels)
endif()
set(body "/* Generated from the kernels directory by embed-kernels.cmake; do not edit. */\n#include <stddef.h>\n\n")
set(table "")
set(count 0)
foreach(name IN LISTS KERNELS)
  file(READ "${DIR}/${name}" hex HEX)
  string(LENGTH "${hex}" hexlen)
  math(EXPR len "${hexlen} / 2")
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  # Break the initialiser into lines of 32 bytes to keep compilers and diffs happy.
  string(REGEX REPLACE "((0x..,){32})" "\\1\n    " bytes "${bytes}")
  string(MAKE_C_IDENTIFIER "${SYMBOL}_${name}" id)
  string(APPEND body "static const unsigned char k_${id}[${len} + 1] = {\n    ${bytes}0x00};\n\n")
  string(APPEND table "    {\"${name}\", k_${id}, ${len}},\n")
  math(EXPR count "${count} + 1")
endforeach()
string(APPEND body "struct kiln_embedded_file {\n    const char *file;\n    const unsigned char *data;\n    size_t len;\n};\n\n")
string(APPEND body "const struct kiln_embedded_file ${SYMBOL}[] = {\n${table}    {0, 0, 0}};\n")
string(APPEND body "const size_t ${SYMBOL}_count = ${count};\n")
file(WRITE "${OUT}.tmp" "${body}")
file(RENAME "${OUT}.tmp" "${OUT}")
