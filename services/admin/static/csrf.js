// Admin requests that change data are POST or DELETE with the session's CSRF token (services/admin/csrf.py):
// action and logout links become POST forms, jQuery's DELETE calls send the X-CSRF-Token header, POST forms a field.
(function () {
  var meta = document.querySelector('meta[name="csrf-token"]');
  if (!meta) return;
  var token = meta.content;

  function tokenField() {
    var field = document.createElement('input');
    field.type = 'hidden';
    field.name = 'csrf_token';
    field.value = token;
    return field;
  }

  function post(url) {
    var form = document.createElement('form');
    form.method = 'POST';
    form.action = url;
    form.appendChild(tokenField());
    document.body.appendChild(form);
    form.submit();
  }

  function selectedPks() {  // as sqladmin's list page: each checked box's first sibling holds the row's pk
    var pks = [];
    document.querySelectorAll('.select-box:checked').forEach(function (box) {
      var pk = Array.prototype.find.call(box.parentElement.children, function (el) { return el !== box; });
      if (pk) pks.push(pk.value);
    });
    return pks;
  }

  document.addEventListener('click', function (event) {
    var link = event.target.closest('a');
    if (!link) return;
    var dataUrl = link.getAttribute('data-url') || '';
    var href = link.getAttribute('href') || '';
    var url;
    if (/\/action\//.test(dataUrl)) url = dataUrl + '?pks=' + selectedPks().join(',');
    else if (/\/action\//.test(href) || /\/logout$/.test(href)) url = href;
    else return;
    event.preventDefault();
    event.stopImmediatePropagation();
    post(url);
  }, true);

  document.querySelectorAll('form').forEach(function (form) {
    if ((form.getAttribute('method') || '').toUpperCase() === 'POST' && !form.querySelector('[name="csrf_token"]')) {
      form.appendChild(tokenField());
    }
  });

  if (window.jQuery) {
    window.jQuery(document).ajaxSend(function (_event, xhr) { xhr.setRequestHeader('X-CSRF-Token', token); });
  }
})();
