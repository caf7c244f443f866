rockspec_format = "3.0"
package = "lunar"
version = "scm-1"
source = {
  url = "git+file:///dev/null", -- install from a checkout: luarocks make rockspec/lunar-scm-1.rockspec
}
description = {
  summary = "Deep learning for Lua 5.4: tensors, autograd and kernels in C",
  detailed = [[
lunar is a deep learning toolkit for Lua 5.4 with a C core: tensors with views and
broadcasting, reverse-mode autograd, OpenBLAS GEMM and OpenMP kernels, safetensors files.
]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.4, < 5.5",
}
external_dependencies = {
  OPENBLAS = { library = "openblas" },
}
build = {
  type = "make",
  build_variables = {
    CFLAGS = "$(CFLAGS)",
    LUA_INCDIR = "$(LUA_INCDIR)",
    LUA = "$(LUA)",
  },
  install_variables = {
    INST_LIBDIR = "$(LIBDIR)",
    INST_LUADIR = "$(LUADIR)",
  },
}
