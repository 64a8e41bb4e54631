//! The operator's console, clicked through in headless Chromium.

mod browser;
mod operator;
mod views;
