//! Printing answers of the API: tables, JSON, outcomes of writes, diffs and times.

use serde_json::Value;

use super::args::Output;

pub(super) fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

pub(super) fn join(v: &Value) -> String {
    v.as_array().map(|a| a.iter().map(plain).collect::<Vec<_>>().join(",")).unwrap_or_default()
}

/// Prints an answer: JSON or YAML as asked; as a table, an object becomes `field  value`
/// lines (nested values as compact JSON) and an array of objects a table of their fields.
pub(super) fn show(out: Output, v: Value) {
    match out {
        Output::Json => println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default()),
        Output::Yaml => print!("{}", serde_yaml::to_string(&v).unwrap_or_default()),
        Output::Table => match &v {
            Value::Object(m) => {
                let rows: Vec<Vec<String>> = m.iter().map(|(k, x)| vec![k.clone(), plain(x)]).collect();
                print_table(&["field", "value"], &rows);
            }
            Value::Array(items) if items.iter().all(Value::is_object) && !items.is_empty() => {
                let mut headers: Vec<String> = Vec::new();
                for item in items {
                    for k in item.as_object().into_iter().flat_map(|o| o.keys()) {
                        if !headers.contains(k) {
                            headers.push(k.clone());
                        }
                    }
                }
                let rows: Vec<Vec<String>> = items.iter().map(|i| headers.iter().map(|h| plain(&i[h.as_str()])).collect()).collect();
                let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
                print_table(&headers, &rows);
            }
            other => println!("{}", plain(other)),
        },
    }
}

/// Prints the outcome of a write.
pub(super) fn report(out: Output, quiet: bool, v: &Value) {
    if quiet {
        let bare = v
            .pointer("/committed/revision")
            .or_else(|| v.pointer("/changeset_created/id"))
            .or_else(|| v.pointer("/changeset_updated/id"))
            .or_else(|| v.pointer("/changeset_discarded/id"));
        if let Some(b) = bare {
            println!("{}", plain(b));
            return;
        }
    }
    if out.structured() {
        show(out, v.clone());
        return;
    }
    if let Some(r) = v.pointer("/committed/revision") {
        println!("committed revision {r}");
    } else if let Some(id) = v.pointer("/changeset_created/id") {
        println!("created changeset {}", plain(id));
    } else if let Some(u) = v.get("changeset_updated") {
        println!("staged in changeset {} ({} changes)", plain(&u["id"]), u["changes"]);
    } else if let Some(id) = v.pointer("/changeset_discarded/id") {
        println!("discarded changeset {}", plain(id));
    } else {
        println!("{v}");
    }
}

/// Prints rows of a JSON array as a table (or the JSON itself).
pub(super) fn print(out: Output, v: &Value, headers: &[&str], row: impl Fn(&Value) -> Vec<String>) {
    if out.structured() {
        show(out, v.clone());
        return;
    }
    let rows: Vec<Vec<String>> = v
        .as_array()
        .map(|a| a.iter().map(|x| row(x).into_iter().map(|c| c.trim_matches('"').to_string()).collect()).collect())
        .unwrap_or_default();
    print_table(headers, &rows);
}

/// Text from the cluster, safe for a terminal: control, bidi-override and separator
/// characters (records stored before they were refused) are shown as `\u{...}` escapes.
pub fn terminal_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if crate::domain::names::is_unsafe_text_char(c) {
            out.push_str(&format!("\\u{{{:04X}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let rows: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(|c| terminal_safe(c)).collect()).collect();
    let rows = &rows[..];
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells.iter().enumerate().map(|(i, c)| format!("{:<w$}", c, w = widths[i])).collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_uppercase()).collect());
    for r in rows {
        line(r.clone());
    }
}

pub(super) fn print_configs(out: Output, tasks: &Value) {
    if out.structured() {
        show(out, tasks.clone());
        return;
    }
    let mut rows = Vec::new();
    for t in tasks.as_array().into_iter().flatten() {
        let configs = t["configs"].as_array().cloned().unwrap_or_default();
        if configs.is_empty() {
            rows.push(vec![plain(&t["name"]), "-".into(), "-".into(), "-".into()]);
        }
        for c in configs {
            let servers: Vec<String> = c["servers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| {
                    // Priority and weight only where they are not the defaults (tier 1, weight 1).
                    let mut tags = vec![plain(&s["status"])];
                    if s["priority"].as_u64().is_some_and(|p| p != 1) {
                        tags.push(format!("tier {}", plain(&s["priority"])));
                    }
                    if s["weight"].as_u64().is_some_and(|w| w != 1) {
                        tags.push(format!("weight {}", plain(&s["weight"])));
                    }
                    format!("{}({})", plain(&s["name"]), tags.join(", "))
                })
                .collect();
            rows.push(vec![plain(&t["name"]), plain(&c["cluster"]), plain(&c["load_balancing"]), servers.join(" > ")]);
        }
    }
    print_table(&["task", "cluster", "load_balancing", "failover order"], &rows);
}

pub(super) fn event_summary(e: &Value) -> String {
    match e.as_object().and_then(|o| o.iter().next()) {
        Some((kind, body)) => {
            let fields: Vec<String> = body
                .as_object()
                .map(|o| o.iter().filter(|(k, _)| *k != "server").map(|(k, v)| format!("{k}={}", plain(v))).collect())
                .unwrap_or_default();
            let server = body.get("server").and_then(|s| s.get("name")).map(|n| format!("server={}", plain(n)));
            format!("{kind}({})", server.into_iter().chain(fields).collect::<Vec<_>>().join(" "))
        }
        None => e.to_string(),
    }
}

pub(super) fn print_diff(changes: &Value) {
    let list = changes.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("  (no changes)");
    }
    for c in list {
        let sign = match c["kind"].as_str() {
            Some("added") => "+",
            Some("removed") => "-",
            _ => "~",
        };
        let detail = match c["kind"].as_str() {
            Some("added") => plain(&c["after"]),
            Some("removed") => plain(&c["before"]),
            _ => format!("{} -> {}", plain(&c["before"]), plain(&c["after"])),
        };
        println!("  {sign} {} {}: {}", plain(&c["entity"]), plain(&c["key"]), detail);
    }
}

/// Milliseconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ` (UTC).
pub fn format_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Parses a UTC time `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM` or `YYYY-MM-DDTHH:MM:SS` (an optional
/// trailing `Z`) into milliseconds since 1970; the inverse of [`format_ms`].
pub fn parse_utc_ms(text: &str) -> Option<u64> {
    let text = text.trim().trim_end_matches('Z');
    let (date, time) = text.split_once(['T', ' ']).unwrap_or((text, "00:00"));
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hour, minute, second) = (t.next()??, t.next()??, t.next().unwrap_or(Some(0))?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 59 || year < 1970 {
        return None;
    }
    // Days since 1970-01-01 from a civil date (Howard Hinnant's algorithm, inverted).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(((days * 86_400) + hour * 3600 + minute * 60 + second) * 1000).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_utc_times() {
        assert_eq!(super::format_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::format_ms(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(super::format_ms(1_795_634_281_876), "2026-11-25T19:18:01Z");
        for ms in [0, 951_782_400_000, 1_795_634_281_000] {
            assert_eq!(super::parse_utc_ms(&super::format_ms(ms)), Some(ms));
        }
        assert_eq!(super::parse_utc_ms("2026-11-25"), Some(1_795_564_800_000));
        assert_eq!(super::parse_utc_ms("2026-11-25T19:18"), Some(1_795_634_280_000));
        for bad in ["", "2026-13-01", "yesterday", "2026-11-25T25:00"] {
            assert_eq!(super::parse_utc_ms(bad), None, "{bad}");
        }
    }
}
