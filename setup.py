"""Build the native circuit kernel (``qsem.simulators._qsem_native``) with the package.

Everything else is declared in pyproject.toml. Without a C compiler the build goes on
without the kernel (the engine then uses its torch path).
"""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """Build the kernel when a compiler is there; otherwise warn and go on without it."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:
            print(f"qsem: native kernel not built ({exc}); the torch path will be used")

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            print(f"qsem: native kernel not built ({exc}); the torch path will be used")


native = Extension(
    "qsem.simulators._qsem_native",
    sources=["simulators/_native/qsem_native.c"],
    extra_compile_args=["-O3", "-fopenmp", "-fcx-limited-range", "-std=gnu11"],
    extra_link_args=["-fopenmp"],
)

setup(ext_modules=[native], cmdclass={"build_ext": OptionalBuildExt})
