//! stub
/// name
pub const NAME: &str = "segment";
