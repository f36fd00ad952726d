//! Kubernetes API objects and the pure logic over them, shared by the apiserver, the client and every component:
//! the static resource table, label and field selectors, patches (JSON, merge, strategic merge), `Status` errors.
//! No I/O.

pub mod duplicates;
pub mod duration;
pub mod patch;
pub mod protobuf;
mod protobuf_schema;
pub mod quantity;
pub mod quota;
pub mod resources;
pub mod schema;
pub mod selector;
pub mod status;
pub mod typeinfo;

pub use resources::{RESOURCES, Resource, Subresource};
pub use status::{ApiError, Cause};
