// The login page: exchanges the pasted admin token for a session cookie (POST /ui/login, JSON).
const form = document.getElementById('login');
const error = document.getElementById('error');
form.addEventListener('submit', async (event) => {
  event.preventDefault();
  error.textContent = '';
  const token = document.getElementById('token').value.trim();
  try {
    const res = await fetch('/ui/login', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token }),
      credentials: 'same-origin',
    });
    const body = await res.json().catch(() => ({}));
    if (!res.ok) {
      error.textContent = `Refused (${res.status}): ${body.message ?? res.statusText}`;
      return;
    }
    const next = new URLSearchParams(location.search).get('next');
    location.assign(next && /^\/ui\/[a-z]*$/.test(next) ? next : '/ui/mesh');
  } catch (e) {
    error.textContent = `Could not reach the replica: ${e.message}`;
  }
});
