//! The Rust form of the three kinds, field for field with OpenKruise's JSON.

pub mod common;
pub mod imagelistpulljob;
pub mod imagepulljob;
pub mod nodeimage;
