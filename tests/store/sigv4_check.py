#!/usr/bin/python3
"""Checks one request as libcurl sent it against botocore's SigV4 signer.

Usage: sigv4_check.py HEADERS_FILE [BODY_FILE]
  HEADERS_FILE  the request line and headers exactly as sent (CRLF lines)
  BODY_FILE     the body as sent (omit or '-' for none)
Environment: DP_SIGV4_ACCESS_KEY, DP_SIGV4_SECRET_KEY, DP_SIGV4_REGION.

botocore recomputes, independently of the C code: the payload SHA-256 from the
body, the canonical query string from the decoded parameters, and the
signature with the same credentials, timestamp and signed headers. Exit 0 and
"OK" when the Authorization header matches; 1 with the canonical request
otherwise. Needs Debian's python3-botocore (hence /usr/bin/python3)."""
import os
import re
import sys
from urllib.parse import quote, unquote

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def main():
    raw = open(sys.argv[1], "rb").read().decode("utf-8")
    body = b""
    if len(sys.argv) > 2 and sys.argv[2] != "-":
        body = open(sys.argv[2], "rb").read()
    lines = raw.split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if not line:
            break
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    m = re.fullmatch(
        r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/s3/aws4_request, "
        r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})",
        headers.get("authorization", ""),
    )
    if not m:
        fail("no SigV4 Authorization header: %r" % headers.get("authorization"))
    signed = m.group(4).split(";")
    for h in ("host", "x-amz-date", "x-amz-content-sha256"):
        if h not in signed:
            fail("%s is not signed (SignedHeaders=%s)" % (h, m.group(4)))

    path, _, query = target.partition("?")
    if quote(unquote(path), safe="/-_.~") != path:
        fail("path %r is not RFC 3986-encoded (want %r)" % (path, quote(unquote(path), safe="/-_.~")))
    params = []
    if query:
        for pair in query.split("&"):
            k, eq, v = pair.partition("=")
            if not eq:
                fail("query parameter %r has no '='" % k)
            params.append((unquote(k), unquote(v)))

    region = os.environ.get("DP_SIGV4_REGION", "us-east-1")
    creds = Credentials(os.environ["DP_SIGV4_ACCESS_KEY"], os.environ["DP_SIGV4_SECRET_KEY"])
    auth = S3SigV4Auth(creds, "s3", region)
    canon_query = auth._canonical_query_string_params(params) if params else ""
    if canon_query != query:
        fail("query string %r is not canonical (sorted, encoded): want %r" % (query, canon_query))

    req = AWSRequest(method=method, url="http://" + headers["host"] + path, data=body)
    req.params = params
    for h in signed:
        if h not in ("x-amz-date", "x-amz-content-sha256"):
            req.headers[h] = headers[h]
    sent_sha = headers["x-amz-content-sha256"]
    if sent_sha == "UNSIGNED-PAYLOAD":
        req.context["client_config"] = Config(s3={"payload_signing_enabled": False})
    req.context["timestamp"] = headers["x-amz-date"]
    auth._modify_request_before_signing(req)
    if req.headers["X-Amz-Content-SHA256"] != sent_sha:
        fail("x-amz-content-sha256 %s, but the body's SHA-256 is %s"
             % (sent_sha, req.headers["X-Amz-Content-SHA256"]))
    canonical = auth.canonical_request(req)
    sts = auth.string_to_sign(req, canonical)
    auth._inject_signature_to_request(req, auth.signature(sts, req))
    want = req.headers["Authorization"]
    got = headers["authorization"]
    if want != got:
        fail("Authorization differs\n sent: %s\n want: %s\ncanonical request (botocore):\n%s"
             % (got, want, canonical))
    print("OK %s %s" % (method, target))


if __name__ == "__main__":
    main()
