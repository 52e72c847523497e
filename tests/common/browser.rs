//! A headless Chromium driven over WebDriver (chromedriver), with just the commands the
//! console test needs. Screenshots go to a folder a person can open.
#![allow(dead_code, unused_imports)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use super::free_port;

/// The key WebDriver names element references with.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    http: reqwest::blocking::Client,
    base: String,
    session: String,
    driver: Child,
    pub shots: PathBuf,
}

fn chromium_binary() -> &'static str {
    // Debian's /usr/bin/chromium is a shell wrapper; chromedriver wants the real binary.
    ["/usr/lib/chromium/chromium", "/usr/bin/chromium"].into_iter().find(|p| Path::new(p).exists()).unwrap_or("chromium")
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session. Panics with the fix when they
    /// are missing (`scripts/deps.sh` installs Debian's `chromium` and `chromium-driver`).
    pub fn start(shots: &Path) -> Self {
        std::fs::create_dir_all(shots).unwrap();
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is not installed: run scripts/deps.sh (Debian chromium and chromium-driver)");
        let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while http.get(format!("{base}/status")).send().is_err() {
            assert!(started.elapsed() < Duration::from_secs(20), "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            // The nodes' certificates come from the test's own CA.
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": chromium_binary(),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"]
            }
        }}});
        let v: Value = http.post(format!("{base}/session")).json(&caps).send().unwrap().json().unwrap();
        let session = v["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no WebDriver session: {v}")).to_string();
        Self { http, base, session, driver, shots: shots.to_path_buf() }
    }

    fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.try_cmd(method, path, body).unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(b) = body {
            req = req.json(&b);
        } else if method == reqwest::Method::POST {
            req = req.json(&json!({}));
        }
        let v: Value = req.send().map_err(|e| format!("{path}: {e}"))?.json().map_err(|e| format!("{path}: {e}"))?;
        if let Some(err) = v["value"]["error"].as_str() {
            return Err(format!("WebDriver {path}: {err}: {}", v["value"]["message"]));
        }
        Ok(v["value"].clone())
    }

    pub fn goto(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({"url": url})));
    }

    pub fn url(&self) -> String {
        self.cmd(reqwest::Method::GET, "/url", None).as_str().unwrap_or("").to_string()
    }

    pub fn source(&self) -> String {
        self.cmd(reqwest::Method::GET, "/source", None).as_str().unwrap_or("").to_string()
    }

    /// Element references matching a CSS selector (or an XPath when it starts with `/`).
    pub fn find_all(&self, selector: &str) -> Vec<String> {
        let using = if selector.starts_with('/') { "xpath" } else { "css selector" };
        let v = self.cmd(reqwest::Method::POST, "/elements", Some(json!({"using": using, "value": selector})));
        v.as_array().into_iter().flatten().filter_map(|e| e[ELEMENT].as_str().map(String::from)).collect()
    }

    pub fn find(&self, selector: &str) -> String {
        let started = Instant::now();
        loop {
            if let Some(e) = self.find_all(selector).into_iter().next() {
                return e;
            }
            if started.elapsed() > Duration::from_secs(10) {
                let source = self.source();
                panic!("no element {selector} on {}: {}", self.url(), &source[..source.len().min(3000)]);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Clicks the element; when a navigation replaced the page between finding and clicking
    /// (a stale reference), finds it again on the new page.
    pub fn click(&self, selector: &str) {
        let started = Instant::now();
        loop {
            let e = self.find(selector);
            match self.try_cmd(reqwest::Method::POST, &format!("/element/{e}/click"), None) {
                Ok(_) => return,
                Err(err) if err.contains("stale element") && started.elapsed() < Duration::from_secs(10) => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(err) => panic!("clicking {selector}: {err}"),
            }
        }
    }

    /// Clicks something that loads a new page (a form's button, a link) and waits until the
    /// old page is gone, so the next lookup finds elements of the new one.
    pub fn submit(&self, selector: &str) {
        let old = self.find("html");
        self.click(selector);
        let started = Instant::now();
        while self.try_cmd(reqwest::Method::GET, &format!("/element/{old}/name"), None).is_ok() {
            assert!(started.elapsed() < Duration::from_secs(15), "clicking {selector} loaded no new page");
            std::thread::sleep(Duration::from_millis(50));
        }
        self.find("body");
    }

    pub fn type_into(&self, selector: &str, text: &str) {
        let e = self.find(selector);
        self.cmd(reqwest::Method::POST, &format!("/element/{e}/clear"), None);
        self.cmd(reqwest::Method::POST, &format!("/element/{e}/value"), Some(json!({"text": text})));
    }

    /// The element's text; when the page replaced the element between finding and reading
    /// (a live page swaps its rows as revisions arrive), finds it again.
    pub fn text(&self, selector: &str) -> String {
        let started = Instant::now();
        loop {
            let e = self.find(selector);
            match self.try_cmd(reqwest::Method::GET, &format!("/element/{e}/text"), None) {
                Ok(v) => return v.as_str().unwrap_or("").to_string(),
                Err(err) if err.contains("stale element") && started.elapsed() < Duration::from_secs(10) => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(err) => panic!("reading the text of {selector}: {err}"),
            }
        }
    }

    /// The current `value` of a form field (what the user or a script put there).
    pub fn value(&self, selector: &str) -> String {
        let e = self.find(selector);
        self.cmd(reqwest::Method::GET, &format!("/element/{e}/property/value"), None).as_str().unwrap_or("").to_string()
    }

    pub fn texts(&self, selector: &str) -> Vec<String> {
        self.find_all(selector)
            .into_iter()
            .map(|e| self.cmd(reqwest::Method::GET, &format!("/element/{e}/text"), None).as_str().unwrap_or("").to_string())
            .collect()
    }

    pub fn cookie(&self, name: &str) -> String {
        self.cmd(reqwest::Method::GET, &format!("/cookie/{name}"), None)["value"].as_str().unwrap_or("").to_string()
    }

    pub fn delete_cookies(&self) {
        self.cmd(reqwest::Method::DELETE, "/cookie", None);
    }

    /// Writes a PNG of the page to `shots/NAME.png`.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let b64 = self.cmd(reqwest::Method::GET, "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD.decode(b64.as_str().unwrap_or("")).unwrap();
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.http.delete(format!("{}/session/{}", self.base, self.session)).send();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
