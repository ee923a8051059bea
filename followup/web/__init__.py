"""Server-rendered pages: staff sign-in and pages (``web``) and the patient's upload link (``patient``)."""
