//! Lexical checks of tar entry paths and OCI whiteout names.
//!
//! Everything here is pure: it decides what an entry *names*; the kernel
//! (openat2 with `RESOLVE_NO_SYMLINKS`) then makes sure the name is reached
//! without leaving the snapshot root.

/// Prefix of an OCI whiteout file (`.wh.<name>` deletes `<name>`).
const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// Prefix of whiteout meta files (`.wh..wh.*`), of which only opaque is used.
const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
/// An opaque-directory marker: hide everything lower layers have in this dir.
const WHITEOUT_OPAQUE: &[u8] = b".wh..wh..opq";

/// A tar entry path normalised to components below the snapshot root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EntryPath {
    components: Vec<Vec<u8>>,
}

impl EntryPath {
    /// Parses an entry path: `.` and empty components are dropped, `..` pops
    /// a component; an absolute path, a `..` that climbs above the root or a
    /// NUL byte is refused with the reason.
    pub(crate) fn parse(raw: &[u8]) -> Result<EntryPath, &'static str> {
        if raw.starts_with(b"/") {
            return Err("absolute path");
        }
        if raw.contains(&0) {
            return Err("path contains a NUL byte");
        }
        let mut components: Vec<Vec<u8>> = Vec::new();
        for component in raw.split(|b| *b == b'/') {
            match component {
                b"" | b"." => {}
                b".." => {
                    if components.pop().is_none() {
                        return Err("path climbs out of the layer root with ..");
                    }
                }
                name => components.push(name.to_vec()),
            }
        }
        Ok(EntryPath { components })
    }

    /// The components of the parent directory.
    pub(crate) fn parent(&self) -> &[Vec<u8>] {
        match self.components.split_last() {
            Some((_, parent)) => parent,
            None => &[],
        }
    }

    /// The last component, `None` for the root.
    pub(crate) fn file_name(&self) -> Option<&[u8]> {
        self.components.last().map(Vec::as_slice)
    }

    /// The components joined with `/` (empty for the root), for openat2.
    pub(crate) fn joined(&self) -> Vec<u8> {
        join(&self.components)
    }
}

/// Joins path components with `/`.
pub(crate) fn join(components: &[Vec<u8>]) -> Vec<u8> {
    components.join(&b'/')
}

/// What an entry's file name means under the OCI layer rules.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum WhiteoutKind<'a> {
    /// An ordinary name.
    None,
    /// `.wh.<name>`: delete `<name>` of lower layers.
    Remove(&'a [u8]),
    /// `.wh..wh..opq`: the parent directory is opaque.
    Opaque,
    /// Another `.wh..wh.*` meta file (e.g. aufs' `.wh..wh.plnk`): ignored.
    Meta,
}

/// Classifies a file name; `Err` for a whiteout that names nothing usable.
pub(crate) fn whiteout_kind(name: &[u8]) -> Result<WhiteoutKind<'_>, &'static str> {
    if name == WHITEOUT_OPAQUE {
        return Ok(WhiteoutKind::Opaque);
    }
    if name.starts_with(WHITEOUT_META_PREFIX) {
        return Ok(WhiteoutKind::Meta);
    }
    match name.strip_prefix(WHITEOUT_PREFIX) {
        None => Ok(WhiteoutKind::None),
        Some(b"") | Some(b".") | Some(b"..") => Err("whiteout names no file"),
        Some(target) => Ok(WhiteoutKind::Remove(target)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comps(p: &EntryPath) -> Vec<&str> {
        p.components
            .iter()
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect()
    }

    #[test]
    fn normalises_common_prefixes() {
        assert_eq!(
            comps(&EntryPath::parse(b"./usr/bin/").unwrap()),
            ["usr", "bin"]
        );
        assert_eq!(
            comps(&EntryPath::parse(b"usr//./lib").unwrap()),
            ["usr", "lib"]
        );
        assert_eq!(comps(&EntryPath::parse(b"a/b/../c").unwrap()), ["a", "c"]);
        assert_eq!(EntryPath::parse(b"./").unwrap().file_name(), None);
        assert_eq!(EntryPath::parse(b"a/..").unwrap().file_name(), None);
    }

    #[test]
    fn parent_and_name() {
        let p = EntryPath::parse(b"etc/ssl/certs").unwrap();
        assert_eq!(p.file_name(), Some(&b"certs"[..]));
        assert_eq!(join(p.parent()), b"etc/ssl");
        assert_eq!(p.joined(), b"etc/ssl/certs");
        let top = EntryPath::parse(b"bin").unwrap();
        assert!(top.parent().is_empty());
        assert_eq!(EntryPath::parse(b".").unwrap().file_name(), None);
    }

    #[test]
    fn refuses_escapes_and_absolute_paths() {
        assert_eq!(
            EntryPath::parse(b"../x"),
            Err("path climbs out of the layer root with ..")
        );
        assert!(EntryPath::parse(b"a/../../x").is_err());
        assert!(EntryPath::parse(b"./../x").is_err());
        assert_eq!(EntryPath::parse(b"/etc/x"), Err("absolute path"));
        assert!(EntryPath::parse(b"a\0b").is_err());
    }

    #[test]
    fn classifies_whiteouts() {
        assert_eq!(whiteout_kind(b"passwd"), Ok(WhiteoutKind::None));
        assert_eq!(
            whiteout_kind(b".wh.passwd"),
            Ok(WhiteoutKind::Remove(b"passwd"))
        );
        assert_eq!(whiteout_kind(b".wh..wh..opq"), Ok(WhiteoutKind::Opaque));
        assert_eq!(whiteout_kind(b".wh..wh.plnk"), Ok(WhiteoutKind::Meta));
        assert_eq!(whiteout_kind(b".wh."), Err("whiteout names no file"));
        assert_eq!(whiteout_kind(b".wh.."), Err("whiteout names no file"));
        assert_eq!(whiteout_kind(b".whx"), Ok(WhiteoutKind::None));
    }
}
