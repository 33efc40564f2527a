//! Which H.264 decoder a camera gets: the first of `[decode] prefer` that this machine
//! has. On a Pi 4 that is the hardware `v4l2h264dec` (it only registers where a V4L2
//! memory-to-memory decoder exists), elsewhere a software decoder. Pure, so it can be
//! tested against any set of elements.

/// The elements we know to be software decoders, the fallback of last resort.
pub const SOFTWARE: &[&str] = &["avdec_h264", "openh264dec"];

/// Picks the first preferred element that `available` says exists; if none of the
/// preferred ones does, a known software decoder that exists.
pub fn choose(prefer: &[String], available: impl Fn(&str) -> bool) -> Option<&str> {
    prefer.iter().map(String::as_str).find(|name| available(name))
}

/// Like [`choose`], but falls back to the software decoders even when the config
/// leaves them out, so a short `prefer` list never leaves a camera without a decoder.
pub fn choose_with_fallback(prefer: &[String], available: impl Fn(&str) -> bool) -> Option<String> {
    choose(prefer, &available).map(str::to_string).or_else(|| SOFTWARE.iter().find(|n| available(n)).map(|n| n.to_string()))
}

/// True for decoders that run on dedicated hardware.
pub fn is_hardware(name: &str) -> bool {
    !SOFTWARE.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_DECODERS;

    fn prefer() -> Vec<String> {
        DEFAULT_DECODERS.iter().map(|s| s.to_string()).collect()
    }

    fn has<'a>(set: &'a [&'a str]) -> impl Fn(&str) -> bool + 'a {
        move |n| set.contains(&n)
    }

    #[test]
    fn pi4_hardware_decoder_wins_when_present() {
        let set = ["avdec_h264", "openh264dec", "v4l2h264dec"];
        assert_eq!(choose_with_fallback(&prefer(), has(&set)).as_deref(), Some("v4l2h264dec"));
        assert!(is_hardware("v4l2h264dec"));
    }

    #[test]
    fn stateless_v4l2_comes_next() {
        let set = ["avdec_h264", "v4l2slh264dec", "vah264dec"];
        assert_eq!(choose_with_fallback(&prefer(), has(&set)).as_deref(), Some("v4l2slh264dec"));
    }

    #[test]
    fn software_when_nothing_else_is_there() {
        let set = ["avdec_h264", "openh264dec"];
        assert_eq!(choose_with_fallback(&prefer(), has(&set)).as_deref(), Some("avdec_h264"));
        let set = ["openh264dec"];
        assert_eq!(choose_with_fallback(&prefer(), has(&set)).as_deref(), Some("openh264dec"));
        assert!(!is_hardware("avdec_h264"));
    }

    #[test]
    fn config_order_is_respected() {
        let prefer = vec!["openh264dec".to_string(), "avdec_h264".to_string()];
        let set = ["avdec_h264", "openh264dec"];
        assert_eq!(choose_with_fallback(&prefer, has(&set)).as_deref(), Some("openh264dec"));
    }

    #[test]
    fn software_fallback_even_if_config_names_only_missing_hardware() {
        let prefer = vec!["v4l2h264dec".to_string()];
        let set = ["avdec_h264"];
        assert_eq!(choose_with_fallback(&prefer, has(&set)).as_deref(), Some("avdec_h264"));
    }

    #[test]
    fn nothing_when_no_decoder_exists() {
        assert_eq!(choose_with_fallback(&prefer(), has(&[])), None);
    }
}
