//! Field maps of the declared fixed layouts, for encoders outside Rust.
//!
//! The SNP report and the TDX header, TD report bodies and QE report are declared once, as
//! zerocopy structs in `snp` and `tdx`. Rust code (the parser, the load generator) reads and
//! writes through those structs; the Python test builders, which assemble synthetic
//! evidence, get the same offsets from here (through `sealgate._core.layout`), so no offset
//! is written a second time. Reserved fields are not listed: builders leave them zero.

use crate::snp::{RawCpuid, RawFirmwareVersion, RawReport, RawSignature};
use crate::tdx::{RawHeader, RawQeReport, RawTdBody10, RawTdBody15};
use core::mem::{offset_of, size_of};

/// One named field: where it starts and how many bytes it spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    pub offset: usize,
    pub size: usize,
}

/// A declared structure's size and public fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub size: usize,
    pub fields: Vec<Field>,
}

/// The size of a field's type without naming it (`size_of_val` on a projection of a null
/// pointer would be UB; a closure's return type carries the type instead).
const fn size_of_ret<T, F>(_: fn(&T) -> &F) -> usize {
    size_of::<F>()
}

macro_rules! field {
    ($t:ty, $f:ident) => {
        Field {
            name: stringify!($f),
            offset: offset_of!($t, $f),
            size: size_of_ret::<$t, _>(|v: &$t| &v.$f),
        }
    };
    // A field of a nested declared struct, named `outer.inner`.
    ($t:ty, $outer:ident : $it:ty, $inner:ident) => {
        Field {
            name: concat!(stringify!($outer), ".", stringify!($inner)),
            offset: offset_of!($t, $outer) + offset_of!($it, $inner),
            size: size_of_ret::<$it, _>(|v: &$it| &v.$inner),
        }
    };
}

/// The layouts by name: `snp.report`, `tdx.header`, `tdx.td_body10`, `tdx.td_body15`,
/// `tdx.qe_report`.
pub fn layout(name: &str) -> Option<Layout> {
    let (size, fields) = match name {
        "snp.report" => (
            size_of::<RawReport>(),
            vec![
                field!(RawReport, version),
                field!(RawReport, guest_svn),
                field!(RawReport, policy),
                field!(RawReport, family_id),
                field!(RawReport, image_id),
                field!(RawReport, vmpl),
                field!(RawReport, signature_algo),
                field!(RawReport, current_tcb),
                field!(RawReport, platform_info),
                field!(RawReport, key_info),
                field!(RawReport, report_data),
                field!(RawReport, measurement),
                field!(RawReport, host_data),
                field!(RawReport, id_key_digest),
                field!(RawReport, author_key_digest),
                field!(RawReport, report_id),
                field!(RawReport, report_id_ma),
                field!(RawReport, reported_tcb),
                field!(RawReport, cpuid),
                field!(RawReport, cpuid: RawCpuid, family),
                field!(RawReport, chip_id),
                field!(RawReport, committed_tcb),
                field!(RawReport, current_version),
                field!(RawReport, current_version: RawFirmwareVersion, build),
                field!(RawReport, committed_version),
                field!(RawReport, launch_tcb),
                field!(RawReport, launch_mit_vector),
                field!(RawReport, current_mit_vector),
                field!(RawReport, signature),
                field!(RawReport, signature: RawSignature, r),
                field!(RawReport, signature: RawSignature, s),
            ],
        ),
        "tdx.header" => (
            size_of::<RawHeader>(),
            vec![
                field!(RawHeader, version),
                field!(RawHeader, att_key_type),
                field!(RawHeader, tee_type),
                field!(RawHeader, qe_svn),
                field!(RawHeader, pce_svn),
                field!(RawHeader, qe_vendor_id),
                field!(RawHeader, user_data),
            ],
        ),
        "tdx.td_body10" => (size_of::<RawTdBody10>(), td_body10()),
        "tdx.td_body15" => (size_of::<RawTdBody15>(), {
            let mut f = td_body10();
            f.push(field!(RawTdBody15, tee_tcb_svn2));
            f.push(field!(RawTdBody15, mr_service_td));
            f
        }),
        "tdx.qe_report" => (
            size_of::<RawQeReport>(),
            vec![
                field!(RawQeReport, cpu_svn),
                field!(RawQeReport, misc_select),
                field!(RawQeReport, attributes),
                field!(RawQeReport, mr_enclave),
                field!(RawQeReport, mr_signer),
                field!(RawQeReport, isv_prod_id),
                field!(RawQeReport, isv_svn),
                field!(RawQeReport, report_data),
            ],
        ),
        _ => return None,
    };
    Some(Layout { size, fields })
}

/// The TDX 1.0 body's fields (also the first part of the 1.5 body, which embeds it as `v10`
/// at offset 0).
fn td_body10() -> Vec<Field> {
    vec![
        field!(RawTdBody10, tee_tcb_svn),
        field!(RawTdBody10, mr_seam),
        field!(RawTdBody10, mr_signer_seam),
        field!(RawTdBody10, seam_attributes),
        field!(RawTdBody10, td_attributes),
        field!(RawTdBody10, xfam),
        field!(RawTdBody10, mr_td),
        field!(RawTdBody10, mr_config_id),
        field!(RawTdBody10, mr_owner),
        field!(RawTdBody10, mr_owner_config),
        field!(RawTdBody10, rtmr),
        field!(RawTdBody10, report_data),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_the_specifications() {
        let snp = layout("snp.report").expect("declared");
        let at = |l: &Layout, n: &str| {
            let f = l.fields.iter().find(|f| f.name == n).expect("field");
            (f.offset, f.size)
        };
        // AMD SEV-SNP ABI Table 22/23.
        assert_eq!(snp.size, 0x4A0);
        assert_eq!(at(&snp, "report_data"), (0x50, 64));
        assert_eq!(at(&snp, "cpuid"), (0x188, 3));
        assert_eq!(at(&snp, "chip_id"), (0x1A0, 64));
        assert_eq!(at(&snp, "current_version.build"), (0x1E8, 1));
        assert_eq!(at(&snp, "signature.s"), (0x2E8, 72));
        // Intel TDX DCAP quote v4/v5: header 48 bytes, body 584 / 648, QE report 384.
        let body = layout("tdx.td_body15").expect("declared");
        assert_eq!((body.size, at(&body, "report_data")), (648, (520, 64)));
        assert_eq!(at(&body, "mr_service_td"), (600, 48));
        assert_eq!(layout("tdx.header").expect("declared").size, 48);
        let qe = layout("tdx.qe_report").expect("declared");
        assert_eq!((qe.size, at(&qe, "isv_svn")), (384, (258, 2)));
        assert!(layout("nope").is_none());
    }

    #[test]
    fn fields_lie_inside_and_do_not_overlap_except_nested() {
        for name in [
            "snp.report",
            "tdx.header",
            "tdx.td_body10",
            "tdx.td_body15",
            "tdx.qe_report",
        ] {
            let l = layout(name).expect("declared");
            let top: Vec<&Field> = l.fields.iter().filter(|f| !f.name.contains('.')).collect();
            for f in &l.fields {
                assert!(f.offset + f.size <= l.size, "{name}.{}", f.name);
            }
            for (a, b) in top.iter().zip(top.iter().skip(1)) {
                assert!(
                    a.offset + a.size <= b.offset,
                    "{name}: {} overlaps {}",
                    a.name,
                    b.name
                );
            }
        }
    }
}
