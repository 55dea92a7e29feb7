"""capnp_library: compiles .capnp schemas to C++ with Debian's `capnp` tool."""

def capnp_library(name, srcs, deps = [], visibility = None):
    """A cc_library of the C++ code generated from `srcs`.

    Schemas import each other by file name within one package; the generated
    headers are included as "<package>/<file>.capnp.h".

    Args:
      name: the cc_library's name.
      srcs: .capnp files of this package.
      deps: other capnp_library targets whose headers the generated code uses.
      visibility: the cc_library's visibility.
    """
    hdrs = [s + ".h" for s in srcs]
    cpps = [s + ".c++" for s in srcs]
    native.genrule(
        name = name + "_compile",
        srcs = srcs,
        outs = hdrs + cpps,
        cmd = ("capnp compile -I/usr/include --no-standard-import " +
               "--src-prefix=$$(dirname $(location {first})) " +
               "-oc++:$(RULEDIR) $(SRCS)").format(first = srcs[0]),
        visibility = ["//visibility:private"],
    )
    native.cc_library(
        name = name,
        srcs = cpps,
        hdrs = hdrs,
        deps = deps + ["@system//:capnp"],
        visibility = visibility,
    )
