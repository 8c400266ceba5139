use frame_metadata::{RuntimeMetadata, RuntimeMetadataPrefixed};
use parity_scale_codec::Decode;

#[test]
fn explore() {
    let hex_text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/state_getMetadata.hex")).unwrap();
    let bytes = hex::decode(hex_text.trim().trim_start_matches("0x")).unwrap();
    let m = RuntimeMetadataPrefixed::decode(&mut &bytes[..]).unwrap();
    let RuntimeMetadata::V14(m) = m.1 else { panic!() };
    for p in &m.pallets {
        let ev = p.event.as_ref().map(|e| e.ty.id);
        print!("{} {} ev={:?}", p.index, p.name, ev);
        if let Some(id) = ev {
            let t = m.types.resolve(id).unwrap();
            if let scale_info::TypeDef::Variant(v) = &t.type_def {
                let names: Vec<String> = v.variants.iter().map(|v| format!("{}:{}({})", v.index, v.name, v.fields.iter().map(|f| format!("{:?}:{}", f.name, f.ty.id)).collect::<Vec<_>>().join(","))).collect();
                if ["System","Balances","SubtensorModule","EVM","Ethereum"].contains(&p.name.as_str()) { print!(" {}", names.join(" ")); } else { print!(" n={}", names.len()); }
            }
        }
        println!();
    }
    println!("extrinsic {:?} ty={}", m.extrinsic.version, m.ty.id);
    let sys = m.pallets.iter().find(|p| p.name=="System").unwrap();
    for e in &sys.storage.as_ref().unwrap().entries { if e.name=="Events" { println!("{:?}", e.ty); } }
    for c in &sys.constants { if c.name=="Version" { println!("Version ty {} {}", c.ty.id, hex::encode(&c.value)); } }
}
