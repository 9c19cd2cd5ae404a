"""The web client's files at / on the chat gateway (docs/PROTOCOL.md, "The web client"):
types, gzip where the client takes it, ETags and 304, long caching for hashed assets only,
the Content-Security-Policy on the page, nothing outside the directory (traversal, symbolic
links, hidden files), the switch that turns it off, and a broken directory refused at start.

The site is a directory the test writes (the real client is exercised in a browser by
tests/web); the node is told where it is with web.root.
"""

import gzip
import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import READY_PREFIX, NodeTestCase, run_node_cli  # noqa: E402

INDEX = b'<!doctype html><html lang="en"><title>petchat</title><script type="module" src="/assets/app-0123abcd.js">' \
        b'</script><div id="app"></div></html>\n'
SCRIPT = b"export const hello = 'world';\n" * 400
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 1 1"></svg>\n'


def make_site(root):
    os.makedirs(os.path.join(root, "assets"))
    files = {"index.html": INDEX, "assets/app-0123abcd.js": SCRIPT, "favicon.svg": SVG, ".secret": b"hidden",
             "assets/app-0123abcd.js.gz": gzip.compress(SCRIPT, 9)}
    for name, body in files.items():
        with open(os.path.join(root, name), "wb") as f:
            f.write(body)
    os.symlink("/etc/passwd", os.path.join(root, "leak.txt"))


class WebFilesTest(NodeTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.site = tempfile.mkdtemp(prefix="petchat-web-")
        make_site(cls.site)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.site, True)
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        self.node = self.start_node(config={"web": {"root": self.site}})

    def get(self, path, method="GET", **headers):
        return self.node.request(method, path, headers=headers or None)

    def test_the_page_and_its_headers(self):
        for path in ("/", "/index.html"):
            with self.subTest(path=path):
                r = self.get(path)
                self.assertEqual(r.status, 200, r.describe())
                self.assertEqual(r.raw, INDEX)
                h = r.headers
                self.assertEqual(h["Content-Type"], "text/html; charset=utf-8")
                self.assertEqual(h["Cache-Control"], "no-cache", "the page is checked every time: it names the assets")
                self.assertEqual(h["X-Content-Type-Options"], "nosniff")
                self.assertEqual(h["X-Frame-Options"], "DENY")
                self.assertEqual(h["Cross-Origin-Opener-Policy"], "same-origin", "an opener keeps no handle")
                self.assertIsNone(h.get("Strict-Transport-Security"), "over plain http HSTS means nothing")
                csp = {d.split()[0]: d.split()[1:] for d in h["Content-Security-Policy"].split(";") if d.strip()}
                self.assertEqual(csp["default-src"], ["'none'"])
                self.assertEqual(csp["script-src"], ["'self'"], "no inline scripts, no other origins")
                self.assertEqual(csp["style-src"], ["'self'"])
                self.assertEqual(csp["connect-src"], ["'self'"], "the page talks to this node only")
                self.assertEqual(csp["frame-ancestors"], ["'none'"])
                self.assertEqual(csp["base-uri"], ["'none'"])
                self.assertEqual(csp["img-src"], ["'self'", "blob:"], "pictures from the node or blob: URLs only")
                self.assertEqual(csp["form-action"], ["'none'"], "no form is sent by the browser itself")
                self.assertEqual(csp["require-trusted-types-for"], ["'script'"], "markup as a string throws")
                self.assertEqual(csp["trusted-types"], ["petchat"], "the client's own policy only")
                features = dict(f.strip().split("=") for f in h["Permissions-Policy"].split(","))
                for feature in ("camera", "microphone", "geolocation", "payment", "usb", "display-capture"):
                    self.assertEqual(features.get(feature), "()", feature)
                self.assertEqual(h["Cross-Origin-Resource-Policy"], "same-origin")

    def test_hashed_assets_are_cached_for_good_and_gzipped_when_taken(self):
        plain = self.get("/assets/app-0123abcd.js")
        self.assertEqual(plain.status, 200, plain.describe())
        self.assertEqual(plain.raw, SCRIPT)
        self.assertEqual(plain.headers["Content-Type"], "text/javascript; charset=utf-8")
        self.assertEqual(plain.headers["Cache-Control"], "public, max-age=31536000, immutable")
        self.assertEqual(plain.headers["Cross-Origin-Resource-Policy"], "same-origin", "no other site loads it")
        self.assertIsNone(plain.headers["Content-Encoding"])
        self.assertEqual(plain.headers["Vary"], "Accept-Encoding")
        zipped = self.get("/assets/app-0123abcd.js", **{"Accept-Encoding": "br, gzip;q=0.8"})
        self.assertEqual(zipped.headers["Content-Encoding"], "gzip")
        self.assertLess(len(zipped.raw), len(SCRIPT) // 10)
        self.assertEqual(gzip.decompress(zipped.raw), SCRIPT)
        self.assertNotEqual(zipped.headers["ETag"], plain.headers["ETag"], "two representations, two ETags")
        refused = self.get("/assets/app-0123abcd.js", **{"Accept-Encoding": "gzip;q=0, identity"})
        self.assertIsNone(refused.headers["Content-Encoding"], "q=0 refuses gzip")
        self.assertEqual(refused.raw, SCRIPT)
        svg = self.get("/favicon.svg")
        self.assertEqual((svg.status, svg.headers["Content-Type"], svg.raw), (200, "image/svg+xml", SVG))
        self.assertEqual(svg.headers["Cache-Control"], "no-cache", "an unhashed name is not cached for good")
        # Opened directly, an SVG is a document and the script a worker: each allowed nothing.
        self.assertEqual(svg.headers["Content-Security-Policy"], "default-src 'none'; sandbox")
        self.assertEqual(plain.headers["Content-Security-Policy"], "default-src 'none'")
        self.assertEqual(svg.headers["X-Content-Type-Options"], "nosniff")

    def test_etag_and_head(self):
        r = self.get("/")
        etag = r.headers["ETag"]
        self.assertRegex(etag, r'^"[0-9a-f]{32}"$')
        again = self.get("/", **{"If-None-Match": 'W/"other", ' + etag})
        self.assertEqual(again.status, 304, again.describe())
        self.assertEqual(again.raw, b"")
        self.assertEqual(self.get("/", **{"If-None-Match": '"other"'}).status, 200)
        head = self.get("/assets/app-0123abcd.js", method="HEAD")
        self.assertEqual(head.status, 200)
        self.assertEqual(head.raw, b"")
        self.assertEqual(head.headers["Content-Length"], str(len(SCRIPT)))

    def test_other_methods_are_refused(self):
        for method in ("POST", "PUT", "DELETE"):
            with self.subTest(method=method):
                r = self.get("/", method=method)
                self.assertError(r, 405, "method_not_allowed")
                self.assertEqual(r.headers["Allow"], "GET, HEAD")

    def test_nothing_outside_the_directory(self):
        for path in ("/assets/../index.html", "/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "//etc/passwd",
                     "/leak.txt", "/.secret", "/assets/app-0123abcd.js.gz", "/assets/", "/assets", "/nope.html",
                     "/index.html/", "/INDEX.HTML", "/index.html%00.js"):
            with self.subTest(path=path):
                r = self.get(path)
                self.assertError(r, 404, "not_found")
                self.assertNotIn(b"root:", r.raw)

    def test_the_api_is_unchanged(self):
        self.assertEqual(self.get("/healthz").status, 200)
        r = self.get("/v1/index.html")
        self.assertError(r, 404, "not_found")
        self.assertEqual(r.headers["X-Content-Type-Options"], "nosniff", "a JSON answer is never sniffed as a page")
        self.assertError(self.get("/v1/"), 404, "not_found")


class WebSwitchTest(NodeTestCase):

    def test_turned_off_the_node_serves_no_page(self):
        site = tempfile.mkdtemp(prefix="petchat-web-")
        self.addCleanup(shutil.rmtree, site, True)
        make_site(site)
        node = self.start_node(config={"web": {"enabled": False, "root": site}})
        self.assertError(node.request("GET", "/"), 404, "not_found")
        self.assertEqual(node.request("GET", "/healthz").status, 200)

    def test_a_directory_without_a_page_stops_the_node(self):
        tmp = tempfile.mkdtemp(prefix="petchat-web-")
        self.addCleanup(shutil.rmtree, tmp, True)
        empty = os.path.join(tmp, "site")
        os.makedirs(empty)
        config = os.path.join(tmp, "node.toml")
        for root in (empty, os.path.join(tmp, "missing")):
            with self.subTest(root=root):
                with open(config, "w") as f:
                    f.write('[web]\nroot = "%s"\n' % root)
                rc, out, err = run_node_cli("--config", config, "--data-dir", os.path.join(tmp, "data"),
                                            "--listen", "127.0.0.1:0", cwd=tmp)
                self.assertNotEqual(rc, 0)
                self.assertIn(root, err)
                self.assertNotIn(READY_PREFIX, out)


if __name__ == "__main__":
    unittest.main()
