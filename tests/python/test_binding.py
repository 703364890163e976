#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""test_binding: the Python binding agrees with the C header and library (no daemon needed).

Usage: test_binding.py ABI_DUMP (tests/python/abi_dump.c built), with the build tree's
package on PYTHONPATH. Proves: cffi's layout of struct r2p2_event (ABI mode restates it)
and the binding's constants match what the C compiler says; the build tree's copy loads
the build tree's libr2p2; strerror is libr2p2's text; errors and bad arguments raise what
the docs say; R2P2_LIBRARY is obeyed, and a wrong one is reported, never passed over.
Exit 77 (skipped) when this interpreter has no cffi.
"""
import errno
import importlib.util
import os
import subprocess
import sys
import unittest

if importlib.util.find_spec("cffi") is None:
    print(f"SKIPPED: {sys.executable} has no cffi module (apt-get install python3-cffi)")
    sys.exit(77)

import r2p2  # pylint: disable=wrong-import-position
from r2p2 import _ffi  # pylint: disable=wrong-import-position

ABI = {}


class Layout(unittest.TestCase):
    def test_event_layout(self):
        ffi = _ffi.ffi
        self.assertEqual(ffi.sizeof("struct r2p2_event"), int(ABI["sizeof.event"]))
        for f in ("type", "status", "id", "data", "len", "service_id", "lane", "code",
                  "deadline_us"):
            self.assertEqual(ffi.offsetof("struct r2p2_event", f), int(ABI["offsetof." + f]), f)
            ftype = ffi.typeof("struct r2p2_event").fields
            size = ffi.sizeof(dict(ftype)[f].type)
            self.assertEqual(size, int(ABI["sizeof." + f]), f)

    def test_constants(self):
        self.assertEqual(int(r2p2.EV_RESPONSE), int(ABI["EV_RESPONSE"]))
        self.assertEqual(int(r2p2.EV_REQUEST), int(ABI["EV_REQUEST"]))
        self.assertEqual(int(r2p2.EV_ERROR), int(ABI["EV_ERROR"]))
        self.assertEqual(r2p2._CALL_NOT_REPLAY_SAFE,  # pylint: disable=protected-access
                         int(ABI["CALL_NOT_REPLAY_SAFE"]))
        self.assertEqual(r2p2.SERVICE_NAME_MAX, int(ABI["SERVICE_NAME_MAX"]))
        self.assertEqual(r2p2.DEFAULT_SOCKET, ABI["DEFAULT_SOCKET"])
        self.assertEqual(r2p2.NO_DEADLINE, int(ABI["NO_DEADLINE"]))

    def test_version(self):
        self.assertEqual(r2p2.VERSION_MAJOR, int(ABI["VERSION_MAJOR"]))
        self.assertEqual(r2p2.VERSION_MINOR, int(ABI["VERSION_MINOR"]))
        self.assertEqual(r2p2.VERSION_PATCH, int(ABI["VERSION_PATCH"]))
        self.assertEqual(r2p2.VERSION, ABI["VERSION"])
        self.assertEqual(r2p2.__version__, ABI["VERSION"])
        self.assertTrue(_ffi.SONAME.endswith(f".so.{r2p2.VERSION_MAJOR}"))


class Library(unittest.TestCase):
    def test_loaded_from_the_build_tree(self):
        build = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(r2p2.__file__))))
        self.assertEqual(r2p2.LIBRARY_PATH, os.path.join(build, "libr2p2.so.0"))

    def test_strerror_is_the_library_text(self):
        for key, text in ABI.items():
            if key.startswith("strerror."):
                code = int(key.split(".", 1)[1])
                self.assertEqual(r2p2.strerror(code), text)
                self.assertEqual(r2p2.strerror(-code), text)

    def _import_with(self, library):
        env = dict(os.environ, R2P2_LIBRARY=library)
        return subprocess.run([sys.executable, "-c", "import r2p2; print(r2p2.LIBRARY_PATH)"],
                              env=env, capture_output=True, text=True, check=False)

    def test_r2p2_library_is_obeyed(self):
        p = self._import_with(r2p2.LIBRARY_PATH)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.strip(), r2p2.LIBRARY_PATH)

    def test_a_wrong_r2p2_library_is_an_import_error(self):
        p = self._import_with("/nonexistent/libr2p2.so.0")
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("ImportError", p.stderr)
        self.assertIn("/nonexistent/libr2p2.so.0 ($R2P2_LIBRARY): no such file", p.stderr)


class Errors(unittest.TestCase):
    def test_attach_without_daemon(self):
        with self.assertRaises(r2p2.Error) as cm:
            r2p2.attach("/nonexistent/r2p2d.sock")
        e = cm.exception
        self.assertIsInstance(e, OSError)
        self.assertEqual(e.errno, errno.ENOENT)
        self.assertEqual(e.strerror, r2p2.strerror(errno.ENOENT))
        self.assertEqual(e.filename, "/nonexistent/r2p2d.sock")

    def test_attach_uses_r2p2_socket(self):
        os.environ["R2P2_SOCKET"] = "/nonexistent/env.sock"
        try:
            with self.assertRaises(r2p2.Error) as cm:
                r2p2.attach()
        finally:
            del os.environ["R2P2_SOCKET"]
        self.assertEqual(cm.exception.filename, "/nonexistent/env.sock")

    def test_socket_path_too_long(self):
        with self.assertRaises(r2p2.Error) as cm:
            r2p2.attach("/" + "x" * 200)
        self.assertEqual(cm.exception.errno, errno.ENAMETOOLONG)

    def test_event_is_a_value(self):
        ev = r2p2.Event(r2p2.EV_REQUEST, 0, 7, b"hi", 1, lane=3)
        self.assertEqual(ev, r2p2.Event(r2p2.EV_REQUEST, 0, 7, b"hi", 1, lane=0))
        self.assertIn("data=b'hi'", repr(ev))
        self.assertNotIn("lane", repr(ev))
        with self.assertRaises(Exception):
            ev.data = b"x"  # frozen

    def test_bad_arguments(self):
        # pylint: disable=protected-access
        with self.assertRaises(TypeError):
            r2p2._service_name(42)
        with self.assertRaises(ValueError):
            r2p2._service_name("echo\0.svc")
        with self.assertRaises(TypeError):
            r2p2._payload("text, not bytes")
        self.assertEqual(len(r2p2._payload(bytearray(5))), 5)
        self.assertEqual(len(r2p2._payload(memoryview(b"abc"))), 3)


def main():
    # abi_dump carries its own sanitizer runtime, if any: not the one preloaded for Python.
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    with subprocess.Popen([sys.argv[1]], stdout=subprocess.PIPE, text=True, env=env) as p:
        for line in p.stdout:
            key, _, value = line.rstrip("\n").partition(" ")
            ABI[key] = value
    if p.returncode != 0:
        sys.exit(f"{sys.argv[1]} failed ({p.returncode})")
    unittest.main(argv=sys.argv[:1], verbosity=2)


if __name__ == "__main__":
    main()
