#![doc = include_str!("../README.md")]

pub mod scripted;

pub use scripted::ScriptedModel;
