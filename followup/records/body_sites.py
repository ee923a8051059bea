"""Our free-text body sites ("left forearm", "back of right hand") as SNOMED CT codes and a laterality: the one
table of body sites, for DICOM and FHIR alike.

Staff type the body site; this small table reads the common ones. Region codes are the SNOMED CT concepts DICOM
lists for anatomic regions (PS3.16 CID 4 "Anatomic Region" and CID 4031 "Common Anatomic Regions"), so an archive
or record can file the image under its region; DICOM states the side apart (laterality). FHIR R4 has no
laterality of its own, so a site with a side is coded there with SNOMED CT's concept of that side where the table
has one ("left forearm": 66480008), else with the region. A site the table does not know keeps its words only
(no code is guessed). The longest matching phrase wins ("upper arm" before "arm").

The other way, an enrolment's SNOMED CT code becomes the words of the site (``SITE_OF_CODE``), which read back
to the same code; a code senders use for a region besides DICOM's (``Region.also``) is read as that region.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

SNOMED = "SCT"  # DICOM's coding scheme designator for SNOMED CT

Concept = tuple[str, str]  # (SNOMED CT code, display)


@dataclass(frozen=True)
class Region:
    code: str  # SNOMED CT, as DICOM lists the region
    meaning: str
    paired: bool  # has a left and a right side (as DICOM sees it): a series then states its laterality
    left: Optional[Concept] = None  # SNOMED CT's concept of the left one, where the table has it
    right: Optional[Concept] = None
    also: tuple[str, ...] = ()  # other SNOMED CT codes senders use for this region (read as it, never written)

    def concept(self, laterality: Optional[str] = None) -> Concept:
        """The SNOMED CT concept of the region on that side ("L", "R"), else of the region."""
        side = {"L": self.left, "R": self.right}.get(laterality or "")
        return side or (self.code, self.meaning)


_AXILLA = Region("91470000", "Axilla", paired=True)
# 51185008 "Thoracic structure": DICOM's code for the chest before 816094009, still what many records send.
_CHEST = Region("816094009", "Chest", paired=True, also=("51185008",))
_HAND = Region("85562004", "Hand", paired=True)
# The back of the hand is in the hand (its DICOM region); SNOMED CT has each side's dorsum.
_BACK_OF_HAND = Region("85562004", "Hand", paired=True, left=("789218009", "Structure of dorsum of left hand"),
                       right=("789219001", "Structure of dorsum of right hand"))
_LOWER_LEG = Region("30021000", "Lower leg", paired=True, left=("48979004", "Structure of left lower leg"),
                    right=("32696007", "Structure of right lower leg"))

#: phrase in our body sites -> region; the first phrase of a code is the words an enrolment with that code gets
REGIONS: dict[str, Region] = {
    "abdomen": Region("818981001", "Abdomen", paired=False),
    "axilla": _AXILLA,
    "armpit": _AXILLA,
    "back": Region("77568009", "Back", paired=False),
    "buttock": Region("46862004", "Buttock", paired=True),
    "cheek": Region("60819002", "Cheek", paired=True),
    "chest": _CHEST,
    "ear": Region("117590005", "Ear", paired=True, left=("89644007", "Left ear structure"),
                  right=("25577004", "Right ear structure")),
    "eyelid": Region("80243003", "Eyelid", paired=True),
    "face": Region("89545001", "Face", paired=True),
    "finger": Region("7569003", "Finger", paired=True),
    "flank": Region("58602004", "Flank", paired=True),
    "foot": Region("56459004", "Foot", paired=True),
    "forearm": Region("14975008", "Forearm", paired=True, left=("66480008", "Structure of left forearm"),
                      right=("64262003", "Structure of right forearm")),
    "hand": _HAND,
    "back of hand": _BACK_OF_HAND,
    "dorsum of hand": _BACK_OF_HAND,
    "head": Region("69536005", "Head", paired=False),
    "hip": Region("29836001", "Hip", paired=True),
    "knee": Region("72696002", "Knee", paired=True),
    "lower back": Region("52612000", "Lumbar region", paired=True),
    "lower leg": _LOWER_LEG,
    "shin": _LOWER_LEG,
    "calf": _LOWER_LEG,
    "leg": Region("61685007", "Lower limb", paired=True),
    "neck": Region("45048000", "Neck", paired=False),
    "nose": Region("45206002", "Nose", paired=False),
    "scalp": Region("41695006", "Scalp", paired=False),
    "shoulder": Region("16982005", "Shoulder", paired=True, left=("91775009", "Structure of left shoulder region"),
                       right=("91774008", "Structure of right shoulder region")),
    "thigh": Region("68367000", "Thigh", paired=True, left=("61396006", "Structure of left thigh"),
                    right=("11207009", "Structure of right thigh")),
    "thumb": Region("76505004", "Thumb", paired=True),
    "toe": Region("29707007", "Toe", paired=True),
    "trunk": Region("22943007", "Trunk", paired=True),
    "upper arm": Region("40983000", "Upper arm", paired=True, left=("368208006", "Left upper arm structure"),
                        right=("368209003", "Right upper arm structure")),
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

    @property
    def concept(self) -> Optional[Concept]:
        """The site's SNOMED CT concept for a record (FHIR): the side's own where the table has it, else the
        region's; None for a site the table does not know."""
        return self.region.concept(self.laterality) if self.region else None


# Longest first; a phrase with "of" in it ("back of hand") is looked for before "of" is read away.
_PHRASES = sorted(REGIONS, key=len, reverse=True)


def _find(phrase: str, keys) -> Optional[Region]:
    return next((REGIONS[key] for key in keys if re.search(rf"\b{key}\b", phrase)), None)


@lru_cache(maxsize=1024)
def read_body_site(text: str) -> BodySite:
    """The SNOMED CT region and laterality our free-text ``text`` names (None for what it does not say)."""
    words = re.sub(r"[^a-z ]+", " ", text.lower()).split()
    sides = {"left": "L", "right": "R"}
    named = {sides[w] for w in words if w in sides}
    laterality = named.pop() if len(named) == 1 else None
    phrase = " ".join(w for w in words if w not in sides)
    region = _find(phrase, [k for k in _PHRASES if " of " in k]) or _find(_OF.sub("", phrase), _PHRASES)
    return BodySite(text=text.strip(), region=region, laterality=laterality)


def _sided(phrase: str, side: str) -> str:
    """ "forearm", "left" -> "left forearm"; "back of hand", "left" -> "back of left hand"."""
    head, of, tail = phrase.rpartition(" of ")
    return f"{head}{of}{side} {tail}" if of else f"{side} {phrase}"


def _site_of_code() -> dict[str, str]:
    out: dict[str, str] = {}
    for phrase, region in REGIONS.items():
        for code in (region.code, *region.also):
            out.setdefault(code, phrase)
        for side, concept in (("left", region.left), ("right", region.right)):
            if concept:
                out.setdefault(concept[0], _sided(phrase, side))
    return out


#: SNOMED CT code -> the words of the site it names (which ``read_body_site`` reads back to that code's region)
SITE_OF_CODE: dict[str, str] = _site_of_code()
