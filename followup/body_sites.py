"""Our free-text body sites ("left forearm", "back of right hand") as SNOMED CT codes and a laterality.

Staff type the body site; this small table reads the common ones. Codes are the SNOMED CT concepts DICOM lists
for anatomic regions (PS3.16 CID 4 "Anatomic Region" and CID 4031 "Common Anatomic Regions"), so an archive or
record can file the image under its region. A site the table does not know keeps its words only (no code is
guessed). The longest matching phrase wins ("upper arm" before "arm").
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

SNOMED = "SCT"  # DICOM's coding scheme designator for SNOMED CT

@dataclass(frozen=True)
class Region:
    code: str  # SNOMED CT
    meaning: str
    paired: bool  # has a left and a right side (as DICOM sees it): a series then states its laterality


#: phrase in our body sites -> region
REGIONS: dict[str, Region] = {
    "abdomen": Region("818981001", "Abdomen", paired=False),
    "axilla": Region("91470000", "Axilla", paired=True),
    "armpit": Region("91470000", "Axilla", paired=True),
    "back": Region("77568009", "Back", paired=False),
    "buttock": Region("46862004", "Buttock", paired=True),
    "cheek": Region("60819002", "Cheek", paired=True),
    "chest": Region("816094009", "Chest", paired=True),
    "ear": Region("117590005", "Ear", paired=True),
    "eyelid": Region("80243003", "Eyelid", paired=True),
    "face": Region("89545001", "Face", paired=True),
    "finger": Region("7569003", "Finger", paired=True),
    "flank": Region("58602004", "Flank", paired=True),
    "foot": Region("56459004", "Foot", paired=True),
    "forearm": Region("14975008", "Forearm", paired=True),
    "hand": Region("85562004", "Hand", paired=True),
    "head": Region("69536005", "Head", paired=False),
    "hip": Region("29836001", "Hip", paired=True),
    "knee": Region("72696002", "Knee", paired=True),
    "lower back": Region("52612000", "Lumbar region", paired=True),
    "lower leg": Region("30021000", "Lower leg", paired=True),
    "shin": Region("30021000", "Lower leg", paired=True),
    "calf": Region("30021000", "Lower leg", paired=True),
    "leg": Region("61685007", "Lower limb", paired=True),
    "neck": Region("45048000", "Neck", paired=False),
    "nose": Region("45206002", "Nose", paired=False),
    "scalp": Region("41695006", "Scalp", paired=False),
    "shoulder": Region("16982005", "Shoulder", paired=True),
    "thigh": Region("68367000", "Thigh", paired=True),
    "thumb": Region("76505004", "Thumb", paired=True),
    "toe": Region("29707007", "Toe", paired=True),
    "trunk": Region("22943007", "Trunk", paired=True),
    "upper arm": Region("40983000", "Upper arm", paired=True),
    "arm": Region("53120007", "Upper limb", paired=True),
}

#: SNOMED CT laterality qualifiers (DICOM CID 244)
LATERALITY: dict[str, tuple[str, str]] = {"L": ("7771000", "Left"), "R": ("24028007", "Right")}

# "back of right hand" is the hand, not the back: a region named after "of" is the one meant.
_OF = re.compile(r"\b(?:back|front|side|dorsum|palm|top) of (?:the )?")


@dataclass(frozen=True)
class BodySite:
    text: str
    region: Optional[Region]  # None when the table does not know the site
    laterality: Optional[str]  # "L", "R" or None


def read_body_site(text: str) -> BodySite:
    """The SNOMED CT region and laterality our free-text ``text`` names (None for what it does not say)."""
    words = re.sub(r"[^a-z ]+", " ", text.lower()).split()
    sides = {"left": "L", "right": "R"}
    named = {sides[w] for w in words if w in sides}
    laterality = named.pop() if len(named) == 1 else None
    phrase = _OF.sub("", " ".join(w for w in words if w not in sides))
    region = None
    for key in sorted(REGIONS, key=len, reverse=True):
        if re.search(rf"\b{key}\b", phrase):
            region = REGIONS[key]
            break
    return BodySite(text=text.strip(), region=region, laterality=laterality)
