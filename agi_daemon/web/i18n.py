"""English and French pages (the article's language), chosen from the browser's Accept-Language."""
from __future__ import annotations

LANGUAGES = ("en", "fr")

_FR = {
    "Call window": "Fenêtre d'appels",
    "CRM": "CRM",
    "Admin": "Administration",
    "CRM writes waiting": "Écritures CRM en attente",
    "Pending": "En attente",
    "oldest": "la plus ancienne",
    "Dead letters": "Abandonnées",
    "Kind": "Type",
    "Call": "Appel",
    "Attempts": "Tentatives",
    "Last error": "Dernière erreur",
    "Retry": "Réessayer",
    "Log out": "Déconnexion",
    "Log in": "Connexion",
    "Employee": "Employé",
    "Password": "Mot de passe",
    "Wrong employee or password.": "Employé ou mot de passe incorrect.",
    "Too many attempts, try again in a few minutes.": "Trop de tentatives, réessayez dans quelques minutes.",
    "No call right now.": "Aucun appel pour le moment.",
    "Ringing": "Sonne",
    "Answered": "Décroché",
    "Ended": "Terminé",
    "Close": "Fermer",
    "incoming": "entrant",
    "outgoing": "sortant",
    "Line": "Ligne",
    "Unknown caller": "Appelant inconnu",
    "Responsible": "Responsable",
    "Last calls": "Derniers appels",
    "No earlier call.": "Aucun appel précédent.",
    "Name": "Nom",
    "Create lead": "Créer un prospect",
    "Create contact": "Créer un contact",
    "Create company": "Créer une société",
    "Create deal": "Créer une affaire",
    "Leads": "Prospects",
    "Contacts": "Contacts",
    "Companies": "Sociétés",
    "Deals": "Affaires",
    "Calls": "Appels",
    "Phone": "Téléphone",
    "From": "Du",
    "To": "Au",
    "Pipeline": "Pipeline",
    "Filter": "Filtrer",
    "Source": "Source",
    "Status": "Statut",
    "Save": "Enregistrer",
    "Saved": "Enregistré",
    "Convert lead": "Convertir le prospect",
    "Direction": "Sens",
    "Number": "Numéro",
    "Disposition": "Issue",
    "Answered by": "Décroché par",
    "Ring (s)": "Sonnerie (s)",
    "Talk (s)": "Conversation (s)",
    "Record": "Fiche",
    "Started": "Début",
    "answered": "décroché",
    "missed": "manqué",
    "busy": "occupé",
    "failed": "échoué",
    "Lines and their CRM rules": "Lignes et leurs règles CRM",
    "Queue group": "Groupe d'appel",
    "Unknown caller rule": "Appelant inconnu",
    "Create for": "Créer pour",
    "Route known clients to the responsible": "Router les clients connus vers le responsable",
    "Reassign on manual transfer": "Réattribuer au transfert manuel",
    "Decision simulator": "Simulateur de décision",
    "Caller": "Appelant",
    "Callee": "Appelé",
    "Simulate": "Simuler",
    "Links": "Liaisons",
    "connected": "connecté",
    "disconnected": "déconnecté",
    "serving": "en service",
    "stopped": "arrêté",
    "Calls per hour, last 24 h": "Appels par heure, dernières 24 h",
    "not answered": "non décrochés",
    "Pending CRM work": "Travail CRM en attente",
    "CRM mode": "Mode du CRM",
    "Employees": "Employés",
    "Extension": "Poste",
    "nobody": "personne",
    "Live": "En direct",
    "Reconnecting…": "Reconnexion…",
    "Calls not followed: the PBX link is down": "Appels non suivis : le lien avec l'autocommutateur est coupé",
    "yes": "oui",
    "no": "non",
}


def pick_language(accept_language: str | None) -> str:
    """The best of LANGUAGES for an Accept-Language header ("fr-FR,fr;q=0.9,en;q=0.8"); English
    when the browser names neither."""
    best, best_q = "en", -1.0
    for position, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        language = tag.strip().lower().split("-")[0]
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if language in LANGUAGES and q > best_q and q > 0:
            best, best_q = language, q - position * 1e-6
    return best


def translator(language: str):
    table = _FR if language == "fr" else {}

    def t(text: str) -> str:
        return table.get(text, text)

    return t
