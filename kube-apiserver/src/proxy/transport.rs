//! Upstream's proxy `Transport` and `corsRemovingTransport` (`k8s.io/apimachinery/pkg/util/proxy/transport.go`),
//! which pod and Service proxies go through: `X-Forwarded-Uri` (and `-Host`, `-Proto` when known) on the way out;
//! on the way back a `Location` header and the links of `text/html` pages (gzip or deflate ones too) that point at
//! the backend are rewritten to go through the proxy path, and CORS headers are dropped.

use std::io::{Read, Write};

use http::{HeaderMap, HeaderValue};

/// Tags and their URL-valued attributes (upstream's `atomsToAttrs`).
const URL_ATTRIBUTES: &[(&str, &[&str])] = &[
    ("a", &["href"]),
    ("applet", &["codebase"]),
    ("area", &["href"]),
    ("audio", &["src"]),
    ("base", &["href"]),
    ("blockquote", &["cite"]),
    ("body", &["background"]),
    ("button", &["formaction"]),
    ("command", &["icon"]),
    ("del", &["cite"]),
    ("embed", &["src"]),
    ("form", &["action"]),
    ("frame", &["longdesc", "src"]),
    ("head", &["profile"]),
    ("html", &["manifest"]),
    ("iframe", &["longdesc", "src"]),
    ("img", &["longdesc", "src", "usemap"]),
    ("input", &["src", "usemap", "formaction"]),
    ("ins", &["cite"]),
    ("link", &["href"]),
    ("object", &["classid", "codebase", "data", "usemap"]),
    ("q", &["cite"]),
    ("script", &["src"]),
    ("source", &["src"]),
    ("video", &["poster", "src"]),
];

/// What the proxied request looked like to the client: its scheme and host (empty when unknown, as they are to a
/// Go server) and the path in front of the backend path.
#[derive(Debug, Clone, Default)]
pub struct Transport {
    pub scheme: String,
    pub host: String,
    pub path_prepend: String,
}

/// A URL cut in the parts the rewriting looks at.
struct Url<'a> {
    scheme: &'a str,
    host: Option<&'a str>,
    path: &'a str,
    rest: &'a str,
}

fn parse(url: &str) -> Url<'_> {
    let (scheme, after) = match url.split_once("://") {
        Some((s, a)) if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) => {
            (s, Some(a))
        }
        _ => ("", url.strip_prefix("//")),
    };
    let (host, tail) = match after {
        Some(a) => {
            let end = a.find(['/', '?', '#']).unwrap_or(a.len());
            (Some(&a[..end]), &a[end..])
        }
        None => (None, url),
    };
    let end = tail.find(['?', '#']).unwrap_or(tail.len());
    Url { scheme, host, path: &tail[..end], rest: &tail[end..] }
}

/// Go's `path.Join` of two paths: cleaned, `.` and `..` resolved, rooted if either starts the path with `/`.
pub fn join(a: &str, b: &str) -> String {
    let joined = format!("{a}/{b}");
    let rooted = joined.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for seg in joined.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|s| *s != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            s => out.push(s),
        }
    }
    let body = out.join("/");
    if rooted { format!("/{body}") } else { body }
}

impl Transport {
    /// The headers upstream's Transport sets on the way to the backend (`backend_path` is the path requested there).
    pub fn forwarded_headers(&self, headers: &mut HeaderMap, backend_path: &str) {
        let mut uri = join(&self.path_prepend, backend_path);
        if backend_path.ends_with('/') && !uri.ends_with('/') {
            uri.push('/');
        }
        for (name, value) in
            [("x-forwarded-uri", &uri), ("x-forwarded-host", &self.host), ("x-forwarded-proto", &self.scheme)]
        {
            if let (false, Ok(v)) = (value.is_empty(), HeaderValue::from_str(value)) {
                headers.insert(name, v);
            }
        }
    }

    /// Upstream's `rewriteURL`: a URL on the page (or in a redirect) that points at the backend (`backend_host`) or
    /// at the host the client asked (`request_host`) with an absolute path is moved under the proxy path; others
    /// are left alone.
    pub fn rewrite_url(&self, target: &str, backend_host: &str, request_host: &str) -> String {
        let url = parse(target);
        let host = url.host.unwrap_or_default();
        let different_host = !host.is_empty() && host != backend_host && host != request_host;
        if different_host || !url.path.starts_with('/') {
            return target.to_string();
        }
        let (scheme, host) = if host == request_host && self.scheme.is_empty() && self.host.is_empty() {
            (url.scheme, host)
        } else {
            (self.scheme.as_str(), self.host.as_str())
        };
        let path = if url.path.starts_with(&self.path_prepend) {
            url.path.to_string()
        } else {
            let mut p = join(&self.path_prepend, url.path);
            if url.path.ends_with('/') && !p.ends_with('/') {
                p.push('/');
            }
            p
        };
        let origin = match (scheme.is_empty(), host.is_empty()) {
            (false, _) => format!("{scheme}://{host}"),
            (true, false) => format!("//{host}"),
            (true, true) => String::new(),
        };
        format!("{origin}{path}{}", url.rest)
    }

    /// The links of an HTML page rewritten (upstream's `rewriteHTML`); None if the page cannot be parsed.
    pub fn rewrite_html(&self, page: &[u8], backend_host: &str, request_host: &str) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(page.len() + 256);
        let handler = lol_html::element!("*", |el| {
            let tag = el.tag_name();
            if let Some((_, attrs)) = URL_ATTRIBUTES.iter().find(|(t, _)| *t == tag) {
                for attr in *attrs {
                    if let Some(value) = el.get_attribute(attr) {
                        el.set_attribute(attr, &self.rewrite_url(&value, backend_host, request_host))?;
                    }
                }
            }
            Ok(())
        });
        let settings = lol_html::Settings { element_content_handlers: vec![handler], ..lol_html::Settings::new() };
        let mut rewriter = lol_html::HtmlRewriter::new(settings, |chunk: &[u8]| out.extend_from_slice(chunk));
        rewriter.write(page).ok()?;
        rewriter.end().ok()?;
        Some(out)
    }

    /// A whole `text/html` body in the given `Content-Encoding` (none, gzip or deflate) rewritten; None when the
    /// encoding is another or the body does not decode, and the body is then passed on untouched.
    pub fn rewrite_body(&self, body: &[u8], encoding: &str, backend_host: &str, request_host: &str) -> Option<Vec<u8>> {
        match encoding {
            "" => self.rewrite_html(body, backend_host, request_host),
            "gzip" => {
                let mut page = Vec::new();
                flate2::read::GzDecoder::new(body).read_to_end(&mut page).ok()?;
                let rewritten = self.rewrite_html(&page, backend_host, request_host)?;
                let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                enc.write_all(&rewritten).ok()?;
                enc.finish().ok()
            }
            "deflate" => {
                let mut page = Vec::new();
                flate2::read::DeflateDecoder::new(body).read_to_end(&mut page).ok()?;
                let rewritten = self.rewrite_html(&page, backend_host, request_host)?;
                let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
                enc.write_all(&rewritten).ok()?;
                enc.finish().ok()
            }
            other => {
                tracing::warn!(
                    encoding = other,
                    "proxy: cannot rewrite the links of a text/html page in this encoding"
                );
                None
            }
        }
    }
}

/// Headers of a backend's answer that are not passed on: hop-by-hop ones (as Go's reverse proxy) and CORS
/// (`corsRemovingTransport`).
pub fn dropped_response_header(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "access-control-allow-credentials"
            | "access-control-allow-headers"
            | "access-control-allow-methods"
            | "access-control-allow-origin"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(prepend: &str) -> Transport {
        Transport { path_prepend: prepend.into(), ..Default::default() }
    }

    #[test]
    fn urls_as_upstream_rewrites_them() {
        // Cases of upstream's TestProxyTransport.
        let tr = t("/proxy/node/node1:10250");
        let (backend, client) = ("example.com", "localhost:8001");
        assert_eq!(tr.rewrite_url("/status", backend, client), "/proxy/node/node1:10250/status");
        assert_eq!(
            tr.rewrite_url("http://example.com/logs/log.log", backend, client),
            "/proxy/node/node1:10250/logs/log.log"
        );
        assert_eq!(
            tr.rewrite_url("http://localhost:8001/logs/", backend, client),
            "http://localhost:8001/proxy/node/node1:10250/logs/"
        );
        assert_eq!(tr.rewrite_url("kubelet.log", backend, client), "kubelet.log", "relative: unchanged");
        assert_eq!(tr.rewrite_url("http://other.org/x", backend, client), "http://other.org/x", "another host");
        assert_eq!(
            tr.rewrite_url("/proxy/node/node1:10250/x?a=b#c", backend, client),
            "/proxy/node/node1:10250/x?a=b#c"
        );
        assert_eq!(tr.rewrite_url("/a/../b/?q=1", backend, client), "/proxy/node/node1:10250/b/?q=1");
        let with_host = Transport { scheme: "https".into(), host: "foo.com".into(), path_prepend: "/proxy".into() };
        assert_eq!(with_host.rewrite_url("http://example.com/x", backend, client), "https://foo.com/proxy/x");
    }

    #[test]
    fn links_in_pages_and_headers() {
        let tr = t("/api/v1/namespaces/ns/pods/p:1080/proxy");
        let page = br#"<html><body><a href="/rewriteme">test</a><img src="http://10.1.2.3:1080/i.png"><a href="x.html">rel</a><p data-x="/keep">t</p></body></html>"#;
        let out = String::from_utf8(tr.rewrite_html(page, "10.1.2.3:1080", "127.0.0.1:6443").unwrap()).unwrap();
        assert_eq!(
            out,
            r#"<html><body><a href="/api/v1/namespaces/ns/pods/p:1080/proxy/rewriteme">test</a><img src="/api/v1/namespaces/ns/pods/p:1080/proxy/i.png"><a href="x.html">rel</a><p data-x="/keep">t</p></body></html>"#
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(br#"<a href="/x">x</a>"#).unwrap();
        let zipped = tr.rewrite_body(&gz.finish().unwrap(), "gzip", "10.1.2.3:1080", "h").unwrap();
        let mut page = String::new();
        flate2::read::GzDecoder::new(&zipped[..]).read_to_string(&mut page).unwrap();
        assert_eq!(page, r#"<a href="/api/v1/namespaces/ns/pods/p:1080/proxy/x">x</a>"#);
        assert!(tr.rewrite_body(b"x", "br", "a", "b").is_none());
        let mut headers = HeaderMap::new();
        tr.forwarded_headers(&mut headers, "/a/b/");
        assert_eq!(headers["x-forwarded-uri"], "/api/v1/namespaces/ns/pods/p:1080/proxy/a/b/");
        assert!(!headers.contains_key("x-forwarded-host"));
        assert!(dropped_response_header("access-control-allow-origin") && !dropped_response_header("content-type"));
    }
}
