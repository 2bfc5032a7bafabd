//! A generated layer written out as a tar stream: each member's headers and
//! data, its link target rendered against the sandbox as the worker will see
//! it, and the layer's ending (end marker, none, or cut short).

use crate::case::{Bulk, End, Kind, Layer, Member, SparseFormat, Target};
use crate::run_case::Ctx;
use crate::tar_header::{emit_data, pad, Header, BLOCK};

impl Ctx {
    fn render_target(&self, t: &Target, own: &[u8], earlier: &[Vec<u8>]) -> Vec<u8> {
        let root = if self.chroot {
            "/".to_string()
        } else {
            format!("{}/", self.root().to_string_lossy())
        };
        match t {
            Target::Path(p) => p.render(),
            Target::Up(n, tail) => {
                let mut s = "../".repeat(*n);
                s.push_str(&tail.join("/"));
                s.into_bytes()
            }
            Target::Outside(x) => format!("{}/outside/{x}", self.sandbox_abs()).into_bytes(),
            Target::Sandbox(x) => format!("{}/{x}", self.sandbox_abs()).into_bytes(),
            Target::Root => root.into_bytes(),
            Target::DevZero => format!("{root}dev/zero").into_bytes(),
            Target::Member(i) => {
                if earlier.is_empty() {
                    own.to_vec()
                } else {
                    earlier[i.index(earlier.len())].clone()
                }
            }
            Target::SelfPath => own.to_vec(),
            Target::Empty => Vec::new(),
            Target::Long(n) => "a/".repeat(*n).into_bytes(),
        }
    }

    pub(crate) fn tar(&self, layer: &Layer) -> Vec<u8> {
        let mut out = Vec::new();
        let mut earlier: Vec<Vec<u8>> = Vec::new();
        let bulk = layer.bulk.as_ref().map(Bulk::members).unwrap_or_default();
        for m in layer.members.iter().chain(&bulk) {
            self.write_member(&mut out, m, &mut earlier);
        }
        match layer.end {
            End::Marker => out.extend_from_slice(&[0u8; 2 * BLOCK]),
            End::NoMarker => {}
            End::Truncated(i) => {
                out.extend_from_slice(&[0u8; 2 * BLOCK]);
                let at = i.index(out.len());
                out.truncate(at);
            }
        }
        out
    }

    fn write_member(&self, out: &mut Vec<u8>, m: &Member, earlier: &mut Vec<Vec<u8>>) {
        {
            let name = m.path.render();
            let mut h = Header {
                name: &name,
                link: b"",
                flag: b'0',
                member: m,
                size: 0,
                dev_minor: 0,
                pax: Vec::new(),
                gnu_sparse: None,
            };
            match &m.kind {
                Kind::File(n) => {
                    let data: Vec<u8> = (0..*n).map(|i| b'a' + (i % 26) as u8).collect();
                    h.size = data.len() as u64;
                    h.write(out);
                    emit_data(out, &data);
                }
                Kind::Dir => {
                    h.flag = b'5';
                    h.write(out);
                }
                Kind::Fifo => {
                    h.flag = b'6';
                    h.write(out);
                }
                Kind::Char(minor) => {
                    h.flag = b'3';
                    h.dev_minor = *minor;
                    h.write(out);
                }
                Kind::Symlink(t) | Kind::Hardlink(t) => {
                    let link = self.render_target(t, &name, earlier);
                    h.flag = if matches!(m.kind, Kind::Symlink(_)) {
                        b'2'
                    } else {
                        b'1'
                    };
                    h.link = &link;
                    h.write(out);
                }
                Kind::Sparse {
                    format,
                    regions,
                    tail,
                } => {
                    let mut map = Vec::new();
                    let mut at = 0u64;
                    for (gap, len) in regions {
                        at += gap;
                        map.push((at, *len));
                        at += len;
                    }
                    let real = at + tail;
                    let data: Vec<u8> = map
                        .iter()
                        .enumerate()
                        .flat_map(|(i, &(_, l))| std::iter::repeat_n(b'0' + i as u8, l as usize))
                        .collect();
                    h.size = data.len() as u64;
                    let numbers = |sep: &str| {
                        map.iter()
                            .map(|(o, l)| format!("{o}{sep}{l}"))
                            .collect::<Vec<_>>()
                            .join(sep)
                    };
                    let mut prefix_data = Vec::new();
                    let short_name;
                    match format {
                        SparseFormat::Gnu => {
                            h.flag = b'S';
                            h.gnu_sparse = Some((map.clone(), real));
                        }
                        SparseFormat::Pax00 => {
                            h.pax
                                .push(("GNU.sparse.size", real.to_string().into_bytes()));
                            h.pax
                                .push(("GNU.sparse.numblocks", map.len().to_string().into_bytes()));
                            for (o, l) in &map {
                                h.pax
                                    .push(("GNU.sparse.offset", o.to_string().into_bytes()));
                                h.pax
                                    .push(("GNU.sparse.numbytes", l.to_string().into_bytes()));
                            }
                        }
                        SparseFormat::Pax01 => {
                            h.pax
                                .push(("GNU.sparse.size", real.to_string().into_bytes()));
                            h.pax
                                .push(("GNU.sparse.numblocks", map.len().to_string().into_bytes()));
                            h.pax.push(("GNU.sparse.map", numbers(",").into_bytes()));
                        }
                        SparseFormat::Pax10 => {
                            h.pax.push(("GNU.sparse.major", b"1".to_vec()));
                            h.pax.push(("GNU.sparse.minor", b"0".to_vec()));
                            h.pax.push(("GNU.sparse.name", name.clone()));
                            h.pax
                                .push(("GNU.sparse.realsize", real.to_string().into_bytes()));
                            prefix_data = format!("{}\n", map.len()).into_bytes();
                            if !map.is_empty() {
                                prefix_data.extend_from_slice(numbers("\n").as_bytes());
                                prefix_data.push(b'\n');
                            }
                            pad(&mut prefix_data);
                            h.size += prefix_data.len() as u64;
                            short_name = b"GNUSparseFile.0/member".to_vec();
                            h.name = &short_name;
                        }
                    }
                    h.write(out);
                    out.extend_from_slice(&prefix_data);
                    emit_data(out, &data);
                }
            }
            earlier.push(name);
        }
    }
}
