//! The adapters on the platforms' documented payloads (`testdata/`, each with the page it
//! comes from in `testdata/SOURCES.md`): what each becomes, and what is refused.

mod payloads;
