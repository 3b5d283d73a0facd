//! Key pair pool (placeholder).
