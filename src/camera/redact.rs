//! Camera credentials out of everything the camera module logs or shows: URLs given by
//! the owner or a device carry `user:password@`, and GStreamer repeats them in its error
//! and debug strings.

/// `text` with the password of every `scheme://user:password@` in it replaced by `***`
/// (`rtsp://admin:hunter2@10.0.0.2/s` → `rtsp://admin:***@10.0.0.2/s`); the rest is kept
/// as it was. The userinfo runs up to the last `@` before the URL's path, query or the
/// end of the word, so a password holding `@`, `:` or `#` is hidden whole.
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (before, after) = rest.split_at(i + 3);
        out.push_str(before);
        let end = after
            .find(|c: char| c == '/' || c == '?' || c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`'))
            .unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rfind('@') {
            Some(at) => {
                let cred = &authority[..at];
                match cred.split_once(':') {
                    Some((user, _)) => {
                        out.push_str(user);
                        out.push_str(":***");
                    }
                    None => out.push_str(cred),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_text_are_hidden_and_the_rest_kept() {
        assert_eq!(redact_urls("rtsp://admin:hunter2@10.0.0.2:554/s"), "rtsp://admin:***@10.0.0.2:554/s");
        assert_eq!(redact_urls("rtsps://u:p@[fd00::1]:322/main?x=1"), "rtsps://u:***@[fd00::1]:322/main?x=1");
        assert_eq!(redact_urls("rtsp://10.0.0.2/s"), "rtsp://10.0.0.2/s");
        assert_eq!(redact_urls("rtsp://token@10.0.0.2/s"), "rtsp://token@10.0.0.2/s");
        assert_eq!(redact_urls("no url here"), "no url here");
        assert_eq!(redact_urls("ends with ://"), "ends with ://");
        // As GStreamer words it: two URLs in one debug string, quoted and bare.
        let dbg = "gstrtspsrc.c(8300): gst_rtspsrc_open (): /GstPipeline:pipeline0/GstRTSPSrc:src:\n\
                   Could not connect to 'rtsp://admin:s3cr%40t@192.0.2.7:554/main' (rtsp://x:y:z@192.0.2.8/sub)";
        let r = redact_urls(dbg);
        assert!(!r.contains("s3cr") && !r.contains(":y") && !r.contains("y:z"), "{r}");
        assert!(r.contains("'rtsp://admin:***@192.0.2.7:554/main'") && r.contains("rtsp://x:***@192.0.2.8/sub"), "{r}");
        // A password holding '@', ':' or '#' is hidden whole.
        for pw in ["p@ss", "a:b", "x#y", "@@"] {
            let r = redact_urls(&format!("error: rtsp://cam:{pw}@10.0.0.9/main failed"));
            assert_eq!(r, "error: rtsp://cam:***@10.0.0.9/main failed", "{pw}");
        }
        // Non-ASCII around and inside stays valid text.
        assert_eq!(redact_urls("é rtsp://ü:ö@h/ é"), "é rtsp://ü:***@h/ é");
    }
}
