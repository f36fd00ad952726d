//! Admission plugins, one file per upstream plugin (`plugin/pkg/admission/<name>`), each a function the request
//! path calls with the request's attributes before a write is stored.

pub mod noderestriction;
