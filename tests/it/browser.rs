//! The demo page in a real browser. Headless Chromium (Debian's `chromium`), driven over
//! WebDriver by `chromedriver` (Debian's `chromium-driver`), loads the page through
//! `sidecar demo` and must show the page's WebSocket echo, then one typed into its form;
//! the same over `demo --tls`, with Chromium trusting exactly the key sidecar logged.
//! Screenshots go to target/browser/. The WebDriver client is plain HTTP/1.1 over a std
//! `TcpStream` with the harness's JSON reader: no async runtime of its own.
//!
//! Without Chromium the test prints a loud skip; with `SIDECAR_BROWSER_TEST=required`
//! (set by `.ci/run`, which installs both packages) their absence is a failure.
//! Everything it starts is ended by PID: chromedriver, and the Chromium processes below
//! it or carrying this run's profile directory.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::Value;

/// chromedriver answering `/status` (its start, on a loaded machine).
const DRIVER_READY: Duration = Duration::from_secs(30);
/// One WebDriver command; a new session starts Chromium.
const COMMAND_DEADLINE: Duration = Duration::from_secs(60);
/// The page showing what the test waits for.
const PAGE_DEADLINE: Duration = Duration::from_secs(30);
/// The WebDriver element reference key (W3C WebDriver §12.1).
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

#[test]
fn demo_page_shows_its_websocket_echo_in_chromium_over_http_and_https() {
    let Some((chromium, chromedriver)) = browser_tools() else { return };
    let plain = demo(&[]);
    let secure = demo(&["--tls"]);
    let pin = logged_spki_pin(&secure);
    let profile = TempDir::new();
    let shots = screenshot_dir();
    let driver = Driver::start(&chromedriver, profile.path(), &shots);
    let session = driver.new_session(&chromium, profile.path(), &pin);

    for (p, scheme, shot) in [(&plain, "http", "demo.png"), (&secure, "https", "demo-tls.png")] {
        let url = format!("{scheme}://127.0.0.1:{}/", p.port());
        driver.command(&session, "POST", "url", &format!("{{\"url\":{}}}", json_string(&url)));
        let state = wait_for_page(&driver, &session, "replica ", " echoes: hello", &url);
        assert_eq!(state.protocol, format!("{scheme}:"), "{url}");
        assert!(state.title.starts_with("Served by replica "), "{url}: heading {:?}", state.title);
        assert_eq!(state.status, "open", "{url}: the page's WebSocket state");

        // Type into the page's form and send, as a person would.
        let input = driver.find(&session, "#m");
        driver.command(&session, "POST", &format!("element/{input}/clear"), "{}");
        let typed = format!("typed over {scheme}");
        driver.command(
            &session,
            "POST",
            &format!("element/{input}/value"),
            &format!("{{\"text\":{}}}", json_string(&typed)),
        );
        let button = driver.find(&session, "button");
        driver.command(&session, "POST", &format!("element/{button}/click"), "{}");
        let state = wait_for_page(&driver, &session, "replica ", &format!(" echoes: {typed}"), &url);

        let png = data_encoding::BASE64
            .decode(driver.command(&session, "GET", "screenshot", "").as_str().unwrap_or("").as_bytes())
            .expect("the screenshot is base64");
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{url}: the screenshot is a PNG");
        std::fs::write(shots.join(shot), &png).expect("write the screenshot");

        // The page and its WebSocket came through sidecar, from Chromium.
        let from_chromium = |l: &String| l.contains("\"GET / HTTP/1.1\" 200") && l.contains("HeadlessChrome");
        assert!(
            wait_until(DEADLINE, || p.stdout_lines().iter().any(from_chromium)),
            "{url}: no access line for Chromium's GET /:\n{}",
            p.stdout_lines().join("\n")
        );
        write_stderr(&format!("browser test: {url} showed {:?}; screenshot {}", state.log, shots.join(shot).display()));
    }
    driver.command(&session, "DELETE", "", "");
}

/// Where screenshots go: target/browser/ (next to `CARGO_TARGET_TMPDIR`, target/tmp).
fn screenshot_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp.parent().unwrap_or(tmp).join("browser");
    std::fs::create_dir_all(&dir).expect("create target/browser");
    dir
}

fn demo(extra: &[&str]) -> Sidecar {
    let mut args = vec!["demo", "--port", "0"];
    args.extend_from_slice(extra);
    Sidecar::start_args(TempDir::new(), &args, &format!("sidecar {}", args.join(" ")))
}

/// The base64 SPKI hash from sidecar's `--ignore-certificate-errors-spki-list=` line.
fn logged_spki_pin(p: &Sidecar) -> String {
    let marker = "--ignore-certificate-errors-spki-list=";
    assert!(p.wait_for_log(marker, DEADLINE), "no SPKI line:\n{}", p.logs().join("\n"));
    let logs = p.logs();
    let line = logs.iter().find(|l| l.contains(marker)).expect("SPKI line");
    line[line.find(marker).expect("marker") + marker.len()..].split_whitespace().next().expect("pin").to_string()
}

/// Writes to the process's stderr directly: libtest captures `eprintln!` of passing
/// tests, and a skip must be seen.
fn write_stderr(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// chromium and chromedriver, from `SIDECAR_CHROMIUM` / `SIDECAR_CHROMEDRIVER` or PATH.
/// `None` (after a loud message) when absent and not required; a panic when required.
fn browser_tools() -> Option<(PathBuf, PathBuf)> {
    let chromium = find_program("SIDECAR_CHROMIUM", &["chromium", "chromium-browser"]);
    let driver = find_program("SIDECAR_CHROMEDRIVER", &["chromedriver"]);
    if let (Some(c), Some(d)) = (&chromium, &driver) {
        return Some((c.clone(), d.clone()));
    }
    let missing = format!(
        "chromium {} and chromedriver {} (Debian: apt-get install -y chromium chromium-driver)",
        if chromium.is_some() { "found" } else { "NOT FOUND" },
        if driver.is_some() { "found" } else { "NOT FOUND" }
    );
    if std::env::var("SIDECAR_BROWSER_TEST").is_ok_and(|v| v == "required") {
        panic!("SIDECAR_BROWSER_TEST=required but {missing}");
    }
    let bar = "!".repeat(78);
    write_stderr(&format!(
        "\n{bar}\nSKIPPED: the browser test of the demo page did not run: {missing}.\n\
         Set SIDECAR_BROWSER_TEST=required to make this a failure (.ci/run does).\n{bar}\n"
    ));
    None
}

fn find_program(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env).map(PathBuf::from) {
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    names.iter().flat_map(|n| std::env::split_paths(&path).map(move |d| d.join(n))).find(|p| p.is_file())
}

/// What the page shows.
#[derive(Debug)]
struct PageState {
    protocol: String,
    title: String,
    status: String,
    log: String,
}

/// Polls the page until its log has a line starting with `prefix` and ending with
/// `suffix`; panics with what it showed at the deadline.
fn wait_for_page(driver: &Driver, session: &str, prefix: &str, suffix: &str, url: &str) -> PageState {
    // An error page (a refused certificate) has none of the demo's elements.
    let script = "const t = (e) => (e && e.textContent) || ''; \
                  return [location.protocol, t(document.querySelector('h1')) || document.title, \
                  t(document.getElementById('state')), t(document.getElementById('log'))];";
    let end = Instant::now() + PAGE_DEADLINE;
    loop {
        let v = driver.command(
            session,
            "POST",
            "execute/sync",
            &format!("{{\"script\":{},\"args\":[]}}", json_string(script)),
        );
        let parts: Vec<String> = v
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .map(|s| s.as_str().unwrap_or("").to_string())
            .collect();
        if let [protocol, title, status, log] = &parts[..] {
            let state = PageState {
                protocol: protocol.clone(),
                title: title.clone(),
                status: status.clone(),
                log: log.clone(),
            };
            if log.lines().any(|l| l.starts_with(prefix) && l.ends_with(suffix)) {
                return state;
            }
            if Instant::now() >= end {
                panic!("{url}: the page never showed `{prefix}…{suffix}` within {PAGE_DEADLINE:?}; it shows {state:?}");
            }
        } else if Instant::now() >= end {
            panic!("{url}: unexpected script result {v:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A running chromedriver and the processes it started; all ended by PID on Drop.
struct Driver {
    child: Child,
    addr: SocketAddr,
    profile: PathBuf,
}

impl Driver {
    fn start(chromedriver: &Path, profile: &Path, logs: &Path) -> Driver {
        // Port 0: chromedriver binds a free port and says which on stdout.
        let mut child = Command::new(chromedriver)
            .arg("--port=0")
            .arg(format!("--log-path={}", logs.join("chromedriver.log").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let stdout = child.stdout.take().expect("stdout piped");
        let mut driver = Driver { child, addr: SocketAddr::from(([127, 0, 0, 1], 0)), profile: profile.to_path_buf() };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // `ChromeDriver was started successfully on port 38737.`; then keep draining.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let port = line.strip_prefix("ChromeDriver was started successfully on port ");
                if let Some(port) = port.and_then(|p| p.trim_end_matches('.').parse::<u16>().ok()) {
                    let _ = tx.send(port);
                }
            }
        });
        let port = rx.recv_timeout(DRIVER_READY).expect("chromedriver did not say its port in time");
        driver.addr.set_port(port);
        let ready = wait_until(DRIVER_READY, || {
            http(driver.addr, "GET", "/status", "", Duration::from_secs(2))
                .is_ok_and(|(_, v)| v.get("value").and_then(|v| v.get("ready")) == Some(&Value::Bool(true)))
        });
        assert!(ready, "chromedriver did not answer /status within {DRIVER_READY:?}");
        driver
    }

    /// A session: headless Chromium with a fresh profile, no network beyond loopback,
    /// trusting certificates only for the key `spki_pin`.
    fn new_session(&self, chromium: &Path, profile: &Path, spki_pin: &str) -> String {
        let args = [
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--no-default-browser-check".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-extensions".into(),
            "--disable-dev-shm-usage".into(),
            "--no-proxy-server".into(),
            "--window-size=900,600".into(),
            format!("--user-data-dir={}", profile.display()),
            format!("--ignore-certificate-errors-spki-list={spki_pin}"),
        ];
        let args: Vec<String> = args.iter().map(|a| json_string(a)).collect();
        let body = format!(
            "{{\"capabilities\":{{\"alwaysMatch\":{{\"browserName\":\"chrome\",\
             \"timeouts\":{{\"pageLoad\":{page},\"script\":{page},\"implicit\":0}},\
             \"goog:chromeOptions\":{{\"binary\":{},\"args\":[{}]}}}}}}}}",
            json_string(&chromium.display().to_string()),
            args.join(","),
            page = PAGE_DEADLINE.as_millis()
        );
        let (status, v) = http(self.addr, "POST", "/session", &body, COMMAND_DEADLINE).expect("POST /session");
        let id = v.get("value").and_then(|v| v.get("sessionId")).and_then(Value::as_str);
        match id {
            Some(id) if status == 200 => id.to_string(),
            _ => panic!("chromedriver did not start Chromium ({status}): {v:?}"),
        }
    }

    /// One command on `session` (`path` relative to it); its `value`. Panics on an error.
    fn command(&self, session: &str, method: &str, path: &str, body: &str) -> Value {
        let full = if path.is_empty() { format!("/session/{session}") } else { format!("/session/{session}/{path}") };
        let (status, v) = match http(self.addr, method, &full, body, COMMAND_DEADLINE) {
            Ok(r) => r,
            Err(e) => panic!("{method} {full}: {e}"),
        };
        assert_eq!(status, 200, "{method} {full} {body}: {v:?}");
        v.get("value").cloned().unwrap_or(Value::Null)
    }

    /// The element id of the first match of `css`.
    fn find(&self, session: &str, css: &str) -> String {
        let body = format!("{{\"using\":\"css selector\",\"value\":{}}}", json_string(css));
        let v = self.command(session, "POST", "element", &body);
        v.get(ELEMENT_KEY).and_then(Value::as_str).unwrap_or_else(|| panic!("no element {css}: {v:?}")).to_string()
    }

    /// chromedriver's descendants and any process using this run's profile directory.
    fn started_processes(&self) -> Vec<u32> {
        let mut table = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
            let ppid = stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().nth(1)?.parse::<u32>().ok());
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let ours = String::from_utf8_lossy(&cmdline).contains(&*self.profile.to_string_lossy());
            table.push((pid, ppid.unwrap_or(0), ours));
        }
        let mut found = vec![self.child.id()];
        let mut i = 0;
        while i < found.len() {
            let parent = found[i];
            found.extend(
                table
                    .iter()
                    .filter(|(pid, ppid, _)| *ppid == parent && !found.contains(pid))
                    .map(|t| t.0)
                    .collect::<Vec<_>>(),
            );
            i += 1;
        }
        let by_profile: Vec<u32> =
            table.iter().filter(|(pid, _, ours)| *ours && !found.contains(pid)).map(|t| t.0).collect();
        found.extend(by_profile);
        found.retain(|&p| p != self.child.id());
        found
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let others = self.started_processes();
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in others {
            let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).stderr(Stdio::null()).status();
        }
    }
}

/// One HTTP/1.1 request on a fresh connection (the harness's `Conn`, every wait
/// bounded by `limit`); the status and the JSON body.
fn http(addr: SocketAddr, method: &str, path: &str, body: &str, limit: Duration) -> Result<(u16, Value), String> {
    let tcp = std::net::TcpStream::connect_timeout(&addr, limit).map_err(|e| format!("connect: {e}"))?;
    let tcp = async_io::Async::new(tcp).map_err(|e| format!("register: {e}"))?;
    let mut c = Conn::from_io(Box::new(tcp));
    c.timeout = limit;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    c.send(request).map_err(|e| format!("send: {e}"))?;
    let r = c.try_read_response(false, limit).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&r.body);
    let json =
        if text.trim().is_empty() { Value::Null } else { json::parse(&text).map_err(|e| format!("{e}: {text}"))? };
    Ok((r.status, json))
}

/// `s` as a JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
