//! `ignition.security.tls.certificateAuthorities` against a real TLS server
//! (`openssl s_server -WWW` with a throw-away CA), and `ignition.proxy` against
//! the local test server acting as the proxy. Needs root and `openssl`.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;

fn apply(cfg: &str) -> (tempfile::TempDir, ignition_engine::Result<()>) {
    common::require_root();
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    common::seed(&root);
    let path = t.path().join("config.ign");
    std::fs::write(&path, cfg).unwrap();
    let res = ignition_engine::run(&common::options(&root, &path, &t.path().join("work")));
    (t, res)
}

/// A CA and a server certificate for localhost/127.0.0.1, made with openssl.
fn make_certs(dir: &Path) {
    let script = r#"set -e
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=ferrocore-test-ca -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout srv.key -out srv.csr -subj /CN=localhost
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > ext
openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 2 -extfile ext
echo 'served over TLS' > hello.txt
"#;
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .expect("openssl is needed (apt-get install openssl)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_tls_server(dir: &Path) -> (Killed, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("openssl")
        .args([
            "s_server", "-quiet", "-WWW", "-cert", "srv.pem", "-key", "srv.key",
        ])
        .args(["-accept", &format!("127.0.0.1:{port}")])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let guard = Killed(child);
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return (guard, port);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("openssl s_server did not start");
}

#[test]
fn config_cas_are_trusted_and_required() {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let (_srv, port) = start_tls_server(certs.path());
    let ca = std::fs::read(certs.path().join("ca.pem")).unwrap();
    let ca_url = format!(
        "data:;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&ca)
    );
    let file = format!(
        r#"{{"path":"/etc/tls","contents":{{"source":"https://localhost:{port}/hello.txt"}}}}"#
    );

    let cfg = format!(
        r#"{{"ignition":{{"version":"3.3.0","security":{{"tls":{{"certificateAuthorities":[{{"source":"{ca_url}"}}]}}}}}},"storage":{{"files":[{file}]}}}}"#
    );
    let (t, res) = apply(&cfg);
    res.unwrap();
    assert_eq!(
        std::fs::read(t.path().join("root/etc/tls")).unwrap(),
        b"served over TLS\n"
    );

    // Without the CA the server is not trusted: retried until httpTotal.
    let cfg = format!(
        r#"{{"ignition":{{"version":"3.3.0","timeouts":{{"httpTotal":2}}}},"storage":{{"files":[{file}]}}}}"#
    );
    let (_t, res) = apply(&cfg);
    let e = res.unwrap_err();
    assert_eq!(e.path.as_deref(), Some("$.storage.files.0.contents.source"));
    assert!(
        e.message.contains("unable to fetch resource in time"),
        "{e}"
    );
}

#[test]
fn bad_ca_bundle_names_its_field() {
    let cfg = r#"{"ignition":{"version":"3.3.0","security":{"tls":{"certificateAuthorities":[{"source":"data:,not-a-pem"}]}}},"storage":{"files":[{"path":"/etc/x","contents":{"source":"http://127.0.0.1:9/x"}}]}}"#;
    let (_t, res) = apply(cfg);
    let e = res.unwrap_err();
    assert_eq!(
        e.path.as_deref(),
        Some("$.ignition.security.tls.certificateAuthorities.0.source")
    );
    assert!(e.message.contains("no PEM certificate"), "{e}");
}

#[test]
fn proxy_and_no_proxy() {
    let proxy = common::Server::start(|req, _| {
        if req.path == "http://through-proxy.invalid/file" {
            (200, vec![], b"via proxy\n".to_vec())
        } else {
            (502, vec![], vec![])
        }
    });
    let direct = common::Server::start(|_, _| (200, vec![], b"direct\n".to_vec()));
    let direct_host = direct.base.trim_start_matches("http://").to_string();
    let cfg = format!(
        r#"{{"ignition":{{"version":"3.3.0","proxy":{{"httpProxy":"{p}","noProxy":["127.0.0.1"]}}}},"storage":{{"files":[
            {{"path":"/etc/proxied","contents":{{"source":"http://through-proxy.invalid/file"}}}},
            {{"path":"/etc/direct","contents":{{"source":"http://{direct_host}/d"}}}}]}}}}"#,
        p = proxy.base
    );
    let (t, res) = apply(&cfg);
    res.unwrap();
    assert_eq!(
        std::fs::read(t.path().join("root/etc/proxied")).unwrap(),
        b"via proxy\n"
    );
    assert_eq!(
        std::fs::read(t.path().join("root/etc/direct")).unwrap(),
        b"direct\n"
    );
    assert_eq!(direct.hits("/d").len(), 1);
    assert_eq!(proxy.hits("http://through-proxy.invalid/file").len(), 1);
}
