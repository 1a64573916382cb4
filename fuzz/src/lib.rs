//! docstore-fuzz: the fuzz targets' checks (src/checks.rs), one public function per target.

pub mod checks;
