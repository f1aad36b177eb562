"""Builds the package with its gRPC stubs generated from the repository's proto/.

`pip install ./python` (from the repository) runs grpc_tools.protoc on
../proto/neuropil/v1/*.proto and puts the modules into neuropil/v1/ of the
build: the stubs always match the schema the services were built from.
NEUROPIL_PROTO names another proto root (a directory holding neuropil/v1/).
"""

import os
import pathlib

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = pathlib.Path(__file__).resolve().parent


def proto_root():
    root = pathlib.Path(os.environ.get("NEUROPIL_PROTO", HERE.parent / "proto"))
    if not (root / "neuropil" / "v1").is_dir():
        raise SystemExit(
            f"neuropil: no proto files under {root}/neuropil/v1: build the package from the "
            "repository (pip install ./python) or set NEUROPIL_PROTO to the proto root"
        )
    return root


class BuildWithStubs(build_py):
    def run(self):
        super().run()
        from grpc_tools import protoc

        root = proto_root()
        out = pathlib.Path(self.build_lib)
        (out / "neuropil" / "v1").mkdir(parents=True, exist_ok=True)
        protos = sorted(str(p.relative_to(root)) for p in (root / "neuropil" / "v1").glob("*.proto"))
        args = ["grpc_tools.protoc", f"-I{root}", f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}"]
        if protoc.main(args + protos) != 0:
            raise SystemExit(f"neuropil: grpc_tools.protoc failed on {protos}")


setup(cmdclass={"build_py": BuildWithStubs})
